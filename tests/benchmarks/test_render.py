"""benchmarks/README.md shows exactly what the JSON records in benchmarks/results/ hold."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_benchmark_tables_match_the_records() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "render.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_record_that_changed_its_preset_says_how() -> None:
    from tests.benchmarks.scripts import load_script

    render = load_script("render")
    command = (
        "torchrun --nproc_per_node 2 -m pocketrec distill ml-1m --preset full --threads 1 "
        "--precision bf16 --epochs 12 --teacher-members 1 --no-ablation --out runs/x"
    )
    label = render._preset_label({"preset": "full", "command": command})
    assert label == "full (--precision bf16, --epochs 12, --teacher-members 1, --no-ablation)"
    plain = "pocketrec distill sports --preset full --threads 2 --out runs/sports_full"
    assert render._preset_label({"preset": "full", "command": plain}) == "full"


def test_two_runs_of_one_preset_each_show_their_own_history_excluded_scores() -> None:
    """Two MovieLens-1M `full` records that differ in `--epochs` pair with the history-excluded
    record of their own run, not whichever came last."""
    import copy
    import json

    from tests.benchmarks.scripts import load_script

    render = load_script("render")
    results = ROOT / "benchmarks" / "results"
    run = json.loads((results / "distill_ml-1m_full.json").read_text())
    scored = json.loads((results / "distill_ml-1m_full_history_excluded.json").read_text())
    records = []
    for epochs, shift in (("12", 0.0), ("16", 0.01)):
        r, s = copy.deepcopy(run), copy.deepcopy(scored)
        r["command"] = run["command"].replace("--epochs 12", f"--epochs {epochs}")
        s["run_command"] = r["command"]
        for kind in ("teacher", "student", "student_nokd"):  # plain scores agree within a pair
            for block in (r[kind]["test"], s[kind]["test"]):
                value = block["ndcg@10"]
                if isinstance(value, dict):
                    value["mean"] += shift
                else:
                    block["ndcg@10"] = value + shift
            if isinstance(s[kind]["test_history_excluded"]["ndcg@10"], dict):
                s[kind]["test_history_excluded"]["ndcg@10"]["mean"] = 0.5 + shift
            else:
                s[kind]["test_history_excluded"]["ndcg@10"] = 0.5 + shift
        r["_file"], s["_file"] = f"run{epochs}.json", f"scored{epochs}.json"
        records += [r, s]
    table = render.distill_table(records)
    for epochs in ("12", "16"):
        rows = [row for row in table.splitlines() if f"--epochs {epochs}" in row]
        linked = [row for row in rows if "scored" in row]
        assert linked and all(f"scored{epochs}.json" in row for row in linked)


def test_a_cost_cell_names_copied_stages_with_their_seeds_together() -> None:
    from tests.benchmarks.scripts import load_script

    render = load_script("render")
    stages = ["sids", "teacher", "student_nokd/seed_0", "student_nokd/seed_2", "student/seed_1"]
    assert render._stages(stages) == "sids, teacher, student_nokd seeds 0, 2, student seed 1"


def test_personalization_rows_name_the_ranking_and_only_bundles_that_differ() -> None:
    import json

    from tests.benchmarks.scripts import load_script

    render = load_script("render")
    records = []
    for name in ("personalize_beauty.json", "personalize_beauty_seen.json"):
        record = json.loads((ROOT / "benchmarks" / "results" / name).read_text())
        records.append(record | {"_file": name})
    labels = {row.split(" | ")[0] for row in render.personalize_table(records).splitlines()[2:]}
    assert labels == {"| beauty", "| beauty, device's events left out of both rankings"}
    records[1] = records[1] | {"bundle": "runs/other/fp32"}
    labels = {row.split(" | ")[0] for row in render.personalize_table(records).splitlines()[2:]}
    assert labels == {
        f"| beauty (bundle {records[0]['bundle']})",
        "| beauty (bundle runs/other/fp32), device's events left out of both rankings",
    }


def test_personalization_rows_name_the_adapter_form() -> None:
    import json

    from tests.benchmarks.scripts import load_script

    render = load_script("render")
    name = "personalize_beauty_seen.json"
    old = json.loads((ROOT / "benchmarks" / "results" / name).read_text()) | {"_file": name}
    shift = old | {"adapter_form": "state shift: hidden numbers fitted", "bundle": "b2"}
    rows = render.personalize_table([old, shift]).splitlines()[2:]
    forms = {row.split(" | ")[0]: row.split(" | ")[1] for row in rows}
    assert set(forms.values()) == {"free code bias, last 50 events", "state shift, last 50 events"}
    assert all(form.startswith("state shift") == ("b2" in label) for label, form in forms.items())
