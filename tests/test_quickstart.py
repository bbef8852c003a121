"""The quickstart teaches from what it measured: a row per lesson, the verdict computed from the
rows (never assumed), how many test images and batches decide it, and a plot beside the JSON."""

import json

from impresslearn.experiments import quickstart as qs


def row(name, imp, sup, samples=2000):
    gap = 100 * (sup - imp)
    margin = qs.gap_margin(imp, sup, samples)
    return {
        "lesson": name,
        "where": "-",
        "impresslearn_acc": imp,
        "supsup_acc": sup,
        "impresslearn_bytes": 100,
        "supsup_bytes": 3200,
        "gap_points": gap,
        "margin_points": margin,
        "call": qs.call(gap, margin),
        "matches": qs.call(gap, margin) == "matches",
        "test_images_per_task": 1000,
    }


def test_the_verdict_follows_the_numbers():
    good, bad = row("A", 0.91, 0.92), row("B", 0.10, 0.91)
    assert good["matches"] and not bad["matches"]
    v = qs.verdict([good, bad])
    assert "matches a dedicated SupSup mask" in v and "A at 32× fewer bytes" in v
    assert "does not on B (10.0 % against 91.0 %)" in v
    assert "matches" not in qs.verdict([bad]).split("does not")[0]
    assert "does not" not in qs.verdict([good])
    assert abs(qs.std_error(0.9, 1000) - 0.949) < 1e-3


def test_a_gap_near_the_threshold_is_too_close_to_call():
    """Two tasks of 1,000 test images: a gap of 3.1 points (the README's RotatedMNIST once) carries
    a margin of about 1.9 points, so against 3 points it is neither a match nor a miss."""
    near = row("R", 0.877, 0.908)
    assert near["call"] == "too close to call" and 1.5 < near["margin_points"] < 2.5
    assert row("M", 0.90, 0.905)["call"] == "matches" and row("F", 0.80, 0.91)["call"] == "does not match"
    v = qs.verdict([row("M", 0.90, 0.905), near])
    assert v.startswith("ImpressLearn matches") and "This run cannot tell on R (a gap of 3.1 ± " in v


def test_a_short_quickstart_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "q.json"
    report = qs.quickstart(out=str(out), verbose=False, mask_iterations=8, alpha_epochs=1.0, new_tasks=1, basis_size=2)
    printed = capsys.readouterr().out
    assert [r["lesson"] for r in report["rows"]] == [lesson.name for lesson in qs.LESSONS]
    assert report["verdict"] == qs.verdict(report["rows"]) and report["verdict"] in printed
    assert "1,000 test images per task" in printed and "batches decide it" in printed
    assert "basis angles 0°, 10°" in printed  # the words come from the settings that ran (K = 2)
    for r, res in zip(report["rows"], report["runs"].values()):
        assert r["call"] == qs.call(r["gap_points"], r["margin_points"]) and r["matches"] == (r["call"] == "matches")
        # each method in its smallest exact form: SupSup's coded masks, ImpressLearn as stored
        assert r["supsup_bytes"] == res["storage"]["supsup_coded"] < res["storage"]["supsup_packed"]
        assert r["impresslearn_bytes"] == res["storage"]["impresslearn_smallest"]
    quantised = list(report["runs"].values())[1]
    assert quantised["config"]["alpha_bits"] == 4 and quantised["config"]["alpha_step"] == "mse"
    assert report["rows"][1]["impresslearn_bytes"] < quantised["storage"]["impresslearn_alpha_bytes"]  # coded codes
    assert (tmp_path / "q.png").stat().st_size > 1000
    assert json.loads(out.read_text())["verdict"] == report["verdict"]
