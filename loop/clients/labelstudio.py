"""Label Studio through label-studio-sdk: the only module that imports the SDK.

The SDK refreshes personal access tokens by itself; for the few calls it lacks (multipart file upload,
authenticated media downloads) we reuse its own auth headers rather than handling tokens twice.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

import httpx
import numpy as np
from label_studio_sdk import LabelStudio, PredictionRequest
from label_studio_sdk.core.api_error import ApiError

from loop.common.brush_rle import mask_to_rle, rle_to_values
from loop.common.errors import LoopError

log = logging.getLogger(__name__)
ACCESS_MARGIN_S = 60.0  # renew an access token this long before it expires


def connect(url: str, api_key: str | None, timeout: float = 60.0, http: httpx.Client | None = None):
    """An SDK client, checked with one call so a wrong URL or token fails here with a clear message. `http`:
    the connection pool it sends through (its owner closes it; see session), else one of the SDK's own."""
    if not api_key:
        raise LoopError("no Label Studio API key: set LABEL_STUDIO_API_KEY (or labelstudio.api_key_file=PATH) to a "
                        "personal access token (Account & Settings in Label Studio) or a legacy token")
    client = LabelStudio(base_url=url.rstrip("/"), api_key=api_key, timeout=timeout, httpx_client=http)
    renew_access_early(client)
    try:
        client.users.whoami()
    except ApiError as exc:
        if exc.status_code in (401, 403):
            raise LoopError(f"Label Studio at {url} rejected the API key (HTTP {exc.status_code}); create a personal "
                            "access token in Account & Settings, or enable legacy tokens for the organization"
                            ) from None
        raise LoopError(f"Label Studio at {url} answered HTTP {exc.status_code}: {exc.body}") from None
    except (httpx.HTTPError, OSError) as exc:
        raise LoopError(f"cannot reach Label Studio at {url} ({exc}); is it running? (python -m loop.run "
                        "stage=labelstudio starts a local one)") from None
    return client


@contextmanager
def session(url: str, api_key: str | None, timeout: float = 60.0) -> Iterator[Any]:
    """A checked client (connect) whose connections are closed when the block ends. The SDK's client has no
    close of its own, so a long-running stage=loop that connects for every export and pre-annotation would
    leave a pool of open sockets to Label Studio behind each time."""
    with httpx.Client(timeout=timeout, follow_redirects=True) as http:
        yield connect(url, api_key, timeout, http=http)


def renew_access_early(client, margin_s: float = ACCESS_MARGIN_S) -> None:
    """With a personal access token, the SDK trades it for short-lived access tokens and renews one only once
    its clock says it has expired; a request sent in its last seconds reaches Label Studio expired (a 401 in
    the middle of a long export or pre-annotation). Renew access tokens `margin_s` before they expire."""
    tokens = getattr(client._client_wrapper, "_tokens_client", None)  # SDK 2.x internals (pinned version)
    if tokens is None:
        return
    still_valid = tokens._is_valid_jwt_token

    def valid(token: str, raise_if_expired: bool = False) -> bool:
        payload = tokens._decode_jwt_payload(token) or {}
        if payload.get("token_type") == "access" and float(payload.get("exp") or 0) - margin_s < time.time():
            return False
        return still_valid(token, raise_if_expired)

    tokens._is_valid_jwt_token = valid


def auth_headers(client) -> dict[str, str]:
    """The Authorization header the SDK would send now (a fresh access token for a PAT)."""
    headers = client._client_wrapper.get_headers()
    return {"Authorization": headers["Authorization"]} if "Authorization" in headers else {}


def create_project(client, title: str, label_config: str, **fields: Any):
    return client.projects.create(title=title, label_config=label_config, **fields)


def upload_images(client, project_id: int, paths: Iterable[Path], chunk: int = 50) -> list[int]:
    """Upload image files as new tasks (the Import dialog's file upload); returns the new task ids."""
    base = client._client_wrapper.get_base_url().rstrip("/")
    paths = list(paths)
    task_ids: list[int] = []
    with httpx.Client(timeout=300) as http:
        for start in range(0, len(paths), chunk):
            files = []
            try:
                # One form field per file: Label Studio reads request.FILES by field name.
                for i, p in enumerate(paths[start:start + chunk]):
                    files.append((f"file{i}", (Path(p).name, open(p, "rb"),
                                            mimetypes.guess_type(str(p))[0] or "application/octet-stream")))
                reply = http.post(f"{base}/api/projects/{project_id}/import", params={"return_task_ids": "true"},
                                  files=files, headers=auth_headers(client))
            finally:
                for _, (_, fh, _) in files:
                    fh.close()
            if reply.status_code >= 400:
                raise LoopError(f"uploading images to project {project_id} failed: HTTP {reply.status_code} "
                                f"{reply.text[:300]}")
            task_ids += reply.json().get("task_ids", [])
    log.info("uploaded %d images to project %d", len(paths), project_id)
    return task_ids


def import_tasks(client, project_id: int, tasks: list[dict[str, Any]], chunk: int = 5000) -> int:
    """Create tasks in bulk from JSON ({"data": ..., optionally "annotations"/"predictions"}), as the Import
    dialog does with a JSON file; returns how many were created."""
    created = 0
    for start in range(0, len(tasks), chunk):
        reply = client.projects.import_tasks(id=project_id, request=tasks[start:start + chunk])
        created += int(reply.task_count or 0)
    return created


def _annotations_filter(operator: str) -> dict[str, Any]:
    """A Data Manager filter on a task's submitted annotations (`equal` 0: unlabeled; `greater`: annotated)."""
    return {"conjunction": "and", "items": [
        {"filter": "filter:tasks:total_annotations", "operator": operator, "type": "Number", "value": 0}]}


def iter_tasks(client, project_id: int, *, only_annotated: bool = False, only_unlabeled: bool = False,
               page_size: int = 1000, include: str | None = None,
               ids: list[int] | None = None) -> Iterator[dict[str, Any]]:
    """A project's tasks with their data, annotations and predictions, as plain dicts (raw URLs), one page
    in memory at a time. `only_annotated` / `only_unlabeled` filter in Label Studio (a Data Manager filter on
    submitted annotations), so the tasks left out are never serialized or sent. `include`: the fields
    Label Studio serializes, of the task and of its annotations and predictions alike (e.g. EXPORT_FIELDS);
    the task's others come back None. Naming them halves Label Studio's work: it skips the Data Manager's
    computed columns (annotators, agreement, comments...).
    `ids`: only these tasks (listed in chunks of `page_size`)."""
    if ids is not None:
        for start in range(0, len(ids), page_size):
            yield from _iter_pages(client, project_id, only_annotated, only_unlabeled, page_size, include,
                                   ids[start:start + page_size])
        return
    yield from _iter_pages(client, project_id, only_annotated, only_unlabeled, page_size, include, None)


def _iter_pages(client, project_id: int, only_annotated: bool, only_unlabeled: bool, page_size: int,
                include: str | None, ids: list[int] | None) -> Iterator[dict[str, Any]]:
    wanted = "greater" if only_annotated else "equal" if only_unlabeled else None
    query: dict[str, Any] = {"filters": _annotations_filter(wanted)} if wanted else {}
    if ids is not None:
        query["selectedItems"] = {"all": False, "included": [int(i) for i in ids]}
    page = 1
    while True:  # page by page; a short page is the last (no request past the end)
        try:
            items = list(client.tasks.list(project=project_id, fields="all", page=page, page_size=page_size,
                                           resolve_uri=False, include=include,
                                           query=json.dumps(query) if query else None).items or [])
        except ApiError as exc:
            if exc.status_code == 404 and page > 1:  # the previous page was full and the last
                return
            raise
        except httpx.HTTPError as exc:
            raise LoopError(f"Label Studio stopped answering while listing project {project_id}'s tasks (page "
                            f"{page} of {page_size}): {exc}; run it again when Label Studio is back") from None
        for t in items:
            yield t.model_dump() if hasattr(t, "model_dump") else dict(t)
        if len(items) < page_size:
            return
        page += 1


# What an export (and the labeling effort drawn from it) reads of a task, its annotations and predictions:
# Label Studio leaves out the rest (see iter_tasks' `include`). The names apply at every level: an annotation
# field missing here comes back absent, not None.
EXPORT_FIELDS = ("id,data,annotations,predictions,created_at,updated_at,result,was_cancelled,ground_truth,"
                 "lead_time,parent_prediction,model_version,score")


def task_versions(client, project_id: int, *, only_annotated: bool = True, page_size: int = 5000
                  ) -> Iterator[tuple[int, str]]:
    """(task id, updated_at) of the project's tasks, in pages of `page_size`: a cheap listing (about 55 bytes
    a task; Label Studio serializes nothing else) that says which tasks changed since an earlier listing.
    Label Studio sets a task's updated_at whenever one of its annotations or predictions is created, updated
    or deleted (also by Data Manager actions), and when its data changes. Read as plain JSON: the SDK's task
    model would add some forty empty fields to each."""
    base = client._client_wrapper.get_base_url().rstrip("/")
    http = client._client_wrapper.httpx_client.httpx_client
    query = json.dumps({"filters": _annotations_filter("greater")}) if only_annotated else None
    page = 1
    while True:
        params = {"project": project_id, "fields": "task_only", "include": "id,updated_at", "page": page,
                  "page_size": page_size, "resolve_uri": "false", **({"query": query} if query else {})}
        try:
            reply = http.get(f"{base}/api/tasks/", params=params, headers=auth_headers(client))
        except httpx.HTTPError as exc:
            raise LoopError(f"Label Studio stopped answering while listing project {project_id}'s tasks (page "
                            f"{page} of {page_size}): {exc}; run it again when Label Studio is back") from None
        if reply.status_code == 404 and page > 1:  # the previous page was full and the last
            return
        if reply.status_code >= 400:
            raise LoopError(f"listing project {project_id}'s tasks failed: HTTP {reply.status_code} "
                            f"{reply.text[:300]}")
        items = reply.json().get("tasks") or []
        for t in items:
            yield int(t["id"]), str(t.get("updated_at") or "")
        if len(items) < page_size:
            return
        page += 1


def list_tasks(client, project_id: int, *, only_annotated: bool = False, page_size: int = 1000
               ) -> list[dict[str, Any]]:
    """All tasks of a project (see iter_tasks), in one list."""
    return list(iter_tasks(client, project_id, only_annotated=only_annotated, page_size=page_size))


def get_task(client, task_id: int) -> dict[str, Any]:
    """One task with its data, annotations and predictions, as a plain dict."""
    task = client.tasks.get(str(task_id))
    return task.model_dump() if hasattr(task, "model_dump") else dict(task)


def get_project(client, project_id: int) -> dict[str, Any]:
    """A project's settings and counters as a plain dict; a missing project is a clear error."""
    try:
        return client.projects.get(project_id).model_dump()
    except ApiError as exc:
        if exc.status_code == 404:
            raise LoopError(f"Label Studio has no project {project_id} (or this token cannot see it); set "
                            "labelstudio.project_id to a project id from its URL (/projects/<id>/)") from None
        raise


def submit_annotation(client, task_id: int, result: list[dict[str, Any]], *, was_cancelled: bool = False,
                      ground_truth: bool = False, lead_time: float | None = None,
                      parent_prediction: int | None = None) -> dict[str, Any]:
    """Submit an annotation for a task, as an annotator pressing Submit (or Skip with was_cancelled);
    `lead_time` (seconds spent) and `parent_prediction` (the prediction it started from) as the labeling
    screen records them."""
    extra = {k: v for k, v in (("lead_time", lead_time), ("parent_prediction", parent_prediction)) if v is not None}
    ann = client.annotations.create(id=task_id, result=result, was_cancelled=was_cancelled,
                                    ground_truth=ground_truth, **extra)
    return ann.model_dump() if hasattr(ann, "model_dump") else dict(ann)


def connect_ml_backend(client, project_id: int, url: str, title: str = "labelloop RTMDet",
                       basic_auth: tuple[str, str] | None = None) -> dict[str, Any]:
    """Settings > Model > Connect Model (with "Use basic auth" when `basic_auth` is (user, password)): Label
    Studio checks /health and /setup before it saves."""
    auth = {"auth_method": "BASIC_AUTH", "basic_auth_user": basic_auth[0], "basic_auth_pass": basic_auth[1]} \
        if basic_auth else {}
    try:
        ml = client.ml.create(project=project_id, url=url, title=title, is_interactive=False, **auth)
    except ApiError as exc:
        hint = (" Label Studio refuses backends on local addresses unless it runs with ML_BLOCK_LOCAL_IP=false "
                "and SSRF_PROTECTION_ENABLED=false") if exc.status_code in (400, 403) else ""
        raise LoopError(f"Label Studio could not connect the ML backend at {url}: HTTP {exc.status_code} "
                        f"{str(exc.body)[:300]}.{hint}") from None
    return ml.model_dump() if hasattr(ml, "model_dump") else dict(ml)


def retrieve_predictions(client, project_id: int, task_ids: list[int] | None = None) -> None:
    """The Data Manager's "Retrieve Predictions" action (Label Studio calls the backend's /predict)."""
    selected = {"all": True, "excluded": []} if task_ids is None else {"all": False, "included": list(task_ids)}
    client.actions.create(id="retrieve_tasks_predictions", project=project_id, selected_items=selected)


def create_prediction(client, task_id: int, prediction: dict[str, Any]) -> int:
    """Store a prediction ({"result", "score", "model_version"}) on a task; returns its id."""
    stored = client.predictions.create(task=task_id, result=prediction["result"], score=prediction["score"],
                                       model_version=prediction["model_version"])
    return int(stored.id)


QUEUE_VIEW = "Most informative first"


def import_predictions(client, project_id: int, predictions: list[tuple[int, dict[str, Any]]]) -> None:
    """Store many predictions ({"result", "score", "model_version"} per task id) in one request (Label
    Studio's predictions import), instead of one request per task."""
    if predictions:
        client.projects.import_predictions(id=project_id, request=[
            PredictionRequest(task=task_id, result=p["result"], score=p["score"], model_version=p["model_version"])
            for task_id, p in predictions])


def ensure_queue_view(client, project_id: int) -> int:
    """A Data Manager tab that lists unlabeled tasks by their prediction score, highest first; "Label All
    Tasks" from that tab (or /next?view=ID) hands them out in that order under Sequential sampling. Label
    Studio averages the scores of the predictions of the project's model version (`prefill_from`), so a task
    is ranked by the current model's prediction only. Returns the tab's id."""
    data = {"title": QUEUE_VIEW, "ordering": ["-tasks:predictions_score"], "filters": _annotations_filter("equal")}
    for view in client.views.list(project=project_id):
        if (view.data or {}).get("title") == QUEUE_VIEW:
            client.views.update(id=str(view.id), data=data, project=project_id)
            return int(view.id)
    return int(client.views.create(project=project_id, data=data).id)


def next_task(client, project_id: int, view_id: int | None = None) -> dict[str, Any] | None:
    """The task Label Studio's labeling stream opens next for this user (None when none is left)."""
    base = client._client_wrapper.get_base_url().rstrip("/")
    reply = httpx.get(f"{base}/api/projects/{project_id}/next/", params={"view": view_id} if view_id else None,
                      headers=auth_headers(client), timeout=60)
    if reply.status_code == 404:
        return None
    reply.raise_for_status()
    return reply.json()


def prefill_from(client, project_id: int, model_version: str) -> None:
    """Settings > Annotation > "Use predictions to prefill annotations" with this model version: annotators
    open a task with the model's boxes already drawn, to correct rather than draw."""
    client.projects.update(id=project_id, show_collab_predictions=True, model_version=model_version)


def mask_to_brush(mask: np.ndarray) -> list[int]:
    """A binary H x W mask in Label Studio's brush RLE (the bytes the SDK's encoder writes, written from the mask's
    own runs): a BrushLabels region's value.rle."""
    return mask_to_rle(np.asarray(mask) > 0)


def brush_to_mask(rle: list[int], width: int, height: int) -> np.ndarray:
    """A BrushLabels region's value.rle as a boolean H x W mask (RGBA bytes; alpha is the mask)."""
    try:
        flat = rle_to_values(rle)
    except ValueError as exc:
        raise LoopError(f"{exc}; delete the region in Label Studio and draw it again") from None
    if flat.size != width * height * 4:
        raise LoopError(f"a brush mask holds {flat.size // 4} pixels, not {width}x{height}: it was drawn on an "
                        "image of another size")
    return flat.reshape(height, width, 4)[:, :, 3] > 127
