"""caig training-curves: reads each job's TensorBoard event files and draws one figure (panels, epochs joined);
a job without event files is named, a resumed job's repeated steps are read once."""

from __future__ import annotations

import pytest
from torch.utils.tensorboard import SummaryWriter

from caig.cli import main
from caig.logs import event_dir
from caig.report.curves import RunName, epoch_axis, read_curve


def write_events(output, points, tag="train/loss"):
    with SummaryWriter(log_dir=str(event_dir(output))) as writer:
        for step, value in points:
            writer.add_scalar(tag, value, step)


def test_the_command_draws_every_panel_from_event_files(tmp_path):
    write_events(tmp_path / "rm_a" / "model", [(1, 0.7), (2, 0.6), (3, 0.5)])
    write_events(tmp_path / "vam" / "model", [(5, 2.0), (10, 1.0)])
    for epoch in (1, 2):
        write_events(tmp_path / "dpo" / f"epoch{epoch}" / "train", [(1, 0.69), (2, 0.6 - 0.1 * epoch)])
    out = tmp_path / "figures" / "training_curves.png"
    code = main([
        "training-curves",
        "--run", f"reward model/a_base={tmp_path / 'rm_a' / 'model'}",
        "--run", f"reward model/b_pretrained={tmp_path / 'rm_b' / 'model'}",  # no event files
        "--run", f"baselines/vam={tmp_path / 'vam' / 'model'}",
        "--run", f"preference/dpo/1={tmp_path / 'dpo' / 'epoch1' / 'train'}",
        "--run", f"preference/dpo/2={tmp_path / 'dpo' / 'epoch2' / 'train'}",
        "--run", f"preference/pcpo/1={tmp_path / 'pcpo' / 'epoch1' / 'train'}",  # no event files
        "--run", f"judged by vam/pcpo_vam_rm/1={tmp_path / 'pcpo_vam_rm' / 'epoch1' / 'train'}",  # a panel without any
        "--out", str(out),
    ])
    assert code == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_resumed_job_keeps_the_later_record_of_a_repeated_step(tmp_path):
    write_events(tmp_path / "model", [(1, 1.0), (2, 0.9), (3, 0.8)])
    write_events(tmp_path / "model", [(3, 0.7), (4, 0.6)])  # the rerun resumed from step 2
    curve = read_curve(event_dir(tmp_path / "model"))
    assert [step for step, _ in curve] == [1, 2, 3, 4]
    assert [value for _, value in curve] == pytest.approx([1.0, 0.9, 0.7, 0.6])
    assert read_curve(event_dir(tmp_path / "model"), "train/grad_norm") is None
    assert read_curve(event_dir(tmp_path / "absent")) is None


def test_epochs_are_joined_on_an_epoch_axis():
    points = epoch_axis({2: [(5, 0.4), (10, 0.3)], 1: [(5, 0.6), (10, 0.5)]})
    assert points == [(0.5, 0.6), (1.0, 0.5), (1.5, 0.4), (2.0, 0.3)]


def test_bad_run_names_and_mixed_panels_are_refused(tmp_path):
    with pytest.raises(Exception, match="PANEL/LINE"):
        RunName.parse("a_base")
    with pytest.raises(Exception, match="whole number"):
        RunName.parse("preference/dpo/last")
    code = main([
        "training-curves", "--run", f"p/a={tmp_path / 'a'}", "--run", f"p/b/1={tmp_path / 'b'}",
        "--out", str(tmp_path / "x.png"),
    ])
    assert code == 2 and not (tmp_path / "x.png").exists()


def test_a_run_of_one_logged_point_is_drawn_with_a_marker(tmp_path):
    from caig.report.curves import curves_figure

    write_events(tmp_path / "a" / "model", [(20, 6.9)])  # a 1-epoch generative RM row logs one point
    write_events(tmp_path / "f" / "model", [(step, 0.7 - step / 1000) for step in range(20, 160, 20)])
    fig = curves_figure([(RunName("reward model", "a_base"), tmp_path / "a" / "model"),
                         (RunName("reward model", "f_full"), tmp_path / "f" / "model")])
    one, many = fig.axes[0].get_lines()
    assert one.get_marker() == "o" and list(one.get_ydata()) == [pytest.approx(6.9)]
    assert many.get_marker() in (None, "None", "")
