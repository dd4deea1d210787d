# RTMDet-tiny for small data on small machines: trains from scratch (no pretrained download), 192x192
# input, light augmentation (no mosaic/mixup, which need long schedules to pay off), BN instead of SyncBN
# (mmengine's `sync_bn='torch'` turns it back on for multi-GPU runs).
#
# This file owns the model: architecture, input size, pipelines, test settings. The schedule (epochs,
# learning rate and warm-up, batch size, workers, validation and checkpoint intervals) is owned by the
# training recipes in conf/train/*.yaml, which train/trainer.py:build_config applies; it is not repeated
# here. `model.img_size` on the command line overrides the input size below.
_base_ = 'mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py'

img_scale = (192, 192)
norm_cfg = dict(type='BN')

model = dict(
    backbone=dict(init_cfg=None, norm_cfg=norm_cfg),
    neck=dict(norm_cfg=norm_cfg),
    bbox_head=dict(num_classes=80, norm_cfg=norm_cfg),
    test_cfg=dict(nms_pre=1000, score_thr=0.001, max_per_img=100))

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomResize', scale=img_scale, ratio_range=(0.75, 1.25), keep_ratio=True),
    dict(type='RandomCrop', crop_size=img_scale, allow_negative_crop=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Pad', size=img_scale, pad_val=dict(img=(114, 114, 114))),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='Pad', size=img_scale, pad_val=dict(img=(114, 114, 114))),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]

train_dataloader = dict(
    pin_memory=False, dataset=dict(pipeline=train_pipeline, filter_cfg=dict(filter_empty_gt=False, min_size=1)))
val_dataloader = dict(batch_size=8, pin_memory=False, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

train_cfg = dict(dynamic_intervals=None)

default_hooks = dict(logger=dict(type='LoggerHook', interval=10))
# No EMA (its momentum is tuned for 300-epoch schedules) and no pipeline switch (no mosaic to switch off).
custom_hooks = []
