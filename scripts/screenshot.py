"""Screenshot of a Label Studio task page with the model's predicted boxes, taken in headless Chromium.

Run it while `make demo` keeps its services up (it reads that demo's demo.json):

    make screenshot                     # -> docs/labelstudio-task.png

Needs Chromium (Debian/Ubuntu: `apt-get install chromium`) and Playwright's Python package, which
`make screenshot` installs; Playwright drives the system Chromium, so no browser is downloaded.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from loop.al.tasks import latest_prediction  # noqa: E402
from loop.clients import labelstudio  # noqa: E402

log = logging.getLogger("screenshot")


def latest_demo(work_dir: Path) -> Path:
    states = sorted(work_dir.glob("demo/*/demo.json"))
    if not states:
        sys.exit(f"no demo found under {work_dir}/demo; start one first: make demo")
    return states[-1]


def pick_task(client, project_id: int) -> dict:
    """The highest task of the queue among unlabeled tasks whose latest prediction has boxes."""
    tasks = [t for t in labelstudio.list_tasks(client, project_id)
             if not t["annotations"] and latest_prediction(t) and latest_prediction(t)["result"]]
    if not tasks:
        sys.exit("no unlabeled task with predicted boxes in the demo project")
    return max(tasks, key=lambda t: latest_prediction(t)["score"] or 0.0)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--state", type=Path, help="a demo's demo.json (default: the newest under runs/demo)")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "labelstudio-task.png")
    ap.add_argument("--password", default=os.environ.get("LABEL_STUDIO_PASSWORD", "labelloop-admin"))
    ap.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    args = ap.parse_args()
    if not args.chromium:
        sys.exit("Chromium not found; install it (Debian/Ubuntu: apt-get install chromium) or pass --chromium PATH")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sys.exit("Playwright is not installed; run `make screenshot` (it installs the screenshot extra)")

    state = json.loads((args.state or latest_demo(Path(os.environ.get("LOOP_WORK_DIR", REPO_ROOT / "runs"))))
                       .read_text())
    url = state["labelstudio_url"]
    client = labelstudio.connect(url, Path(state["token_file"]).read_text().strip())
    task = pick_task(client, state["project_id"])
    page_url = f"{url}/projects/{state['project_id']}/data?tab={state['view_id']}&task={task['id']}"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=args.chromium, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1440, "height": 900}, device_scale_factor=1)
        page.goto(f"{url}/user/login/")
        page.fill("input[name=email]", state["username"])
        page.fill("input[name=password]", args.password)
        page.click("button[type=submit]")
        page.wait_for_url(lambda u: "/user/login" not in u, timeout=60_000)
        page.goto(page_url)
        page.wait_for_selector("canvas", timeout=60_000)  # the image editor has drawn
        page.wait_for_timeout(4000)  # let the regions and the side panel settle
        args.out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.out))
        browser.close()
    log.info("task %d (%d predicted boxes) -> %s", task["id"], len(latest_prediction(task)["result"]), args.out)


if __name__ == "__main__":
    main()
