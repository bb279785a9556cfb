"""The load script's checks (tests/cluster/load_demo.py) on hand-written snakemake output; no cluster needed."""

import load_demo

SUB = "Job {j} has been submitted with SLURM jobid {s} (log: /w/logs/slurm/rule_{rule}/{wc}/{s}.log)."


def write_attempt(run_dir, n, lines):
    (run_dir / f"snakemake-{n}.out").write_text("\n".join(lines) + "\n")


def test_resubmitting_an_unfinished_job_after_an_interrupt_is_not_a_duplicate(tmp_path):
    write_attempt(tmp_path, 0, [SUB.format(j=1, s=1, rule="train", wc="pascal_0"), "Finished jobid: 1 (Rule: train)",
                                SUB.format(j=2, s=2, rule="train", wc="pascal_1")])  # interrupted, never finished
    write_attempt(tmp_path, 1, [SUB.format(j=1, s=1, rule="train", wc="pascal_1"), "Finished jobid: 1 (Rule: train)"])
    per_rule, duplicates = load_demo.submissions(tmp_path)
    assert per_rule == {"train": 3}
    assert duplicates == []


def test_finished_job_submitted_again_or_twice_in_one_attempt_is_a_duplicate(tmp_path):
    write_attempt(tmp_path, 0, [SUB.format(j=1, s=1, rule="train", wc="pascal_0"), "Finished jobid: 1 (Rule: train)",
                                SUB.format(j=2, s=2, rule="evaluate", wc="pascal_0"),
                                SUB.format(j=3, s=3, rule="evaluate", wc="pascal_0")])
    write_attempt(tmp_path, 1, [SUB.format(j=1, s=1, rule="train", wc="pascal_0")])
    _, duplicates = load_demo.submissions(tmp_path)
    assert duplicates == ["snakemake-0.out: evaluate pascal_0", "snakemake-1.out: train pascal_0"]


def test_table_status_missing_incomplete_complete(tmp_path):
    tables = tmp_path / "results" / "demo" / "tables"
    tables.mkdir(parents=True)
    (tables / "table4.md").write_text("| a | 1.0 (2.0, -1.0) |\n")
    (tables / "table5.md").write_text("| a | — (2.0) |\n\n— (paper): no result yet for this cell\n")
    status = load_demo.check_tables(tmp_path, ["table4", "table5", "table6", "figure6"])
    assert status == {"table4": "complete", "table5": "incomplete", "table6": "missing"}
