# RTMDet-Ins-tiny for small data on small machines: instance segmentation (boxes and masks), otherwise the
# same recipe as rtmdet_tiny_demo.py: trains from scratch or from the box model's weights (backbone, neck and
# the shared head convolutions fit), 192x192 input, light augmentation, BN instead of SyncBN.
#
# Masks load as bitmaps (poly2mask=True), so COCO polygons (PolygonLabels) and COCO RLE (BrushLabels) both
# train. COCO evaluation reports bbox and segm mAP. The schedule is the training recipe's (conf/train/*.yaml).
_base_ = 'mmdet::rtmdet/rtmdet-ins_tiny_8xb32-300e_coco.py'

img_scale = (192, 192)
norm_cfg = dict(type='BN')

model = dict(
    backbone=dict(init_cfg=None, norm_cfg=norm_cfg),
    neck=dict(norm_cfg=norm_cfg),
    bbox_head=dict(num_classes=80, norm_cfg=norm_cfg),
    test_cfg=dict(nms_pre=1000, score_thr=0.05, max_per_img=100, mask_thr_binary=0.5))

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True, poly2mask=True),
    dict(type='RandomResize', scale=img_scale, ratio_range=(0.75, 1.25), keep_ratio=True),
    dict(type='RandomCrop', crop_size=img_scale, allow_negative_crop=True, recompute_bbox=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Pad', size=img_scale, pad_val=dict(img=(114, 114, 114))),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1, 1)),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='Pad', size=img_scale, pad_val=dict(img=(114, 114, 114))),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True, poly2mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]

train_dataloader = dict(
    pin_memory=False, dataset=dict(pipeline=train_pipeline, filter_cfg=dict(filter_empty_gt=False, min_size=1)))
val_dataloader = dict(batch_size=8, pin_memory=False, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(metric=['bbox', 'segm'])
test_evaluator = val_evaluator

train_cfg = dict(dynamic_intervals=None)

default_hooks = dict(logger=dict(type='LoggerHook', interval=10))
custom_hooks = []
