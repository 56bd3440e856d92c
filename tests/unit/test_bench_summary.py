"""The per-rule benchmark table gathers Snakemake's records and names a malformed one."""

from __future__ import annotations

import pytest

from caig.errors import InputError
from caig.report.benchmarks import benchmarks_markdown, collect_benchmarks

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def write_record(path, seconds, rss, cpu):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{seconds}\t0:00:01\t{rss}\t1\t1\t1\t0\t0\t50.0\t{cpu}\n")


def test_records_sorted_slowest_first_with_shares(tmp_path):
    write_record(tmp_path / "pairs.tsv", 2.0, 100.0, 1.5)
    write_record(tmp_path / "sample" / "dpo" / "epoch1.tsv", 6.0, 300.0, 5.0)
    table = collect_benchmarks(tmp_path)
    assert table["job"].to_list() == ["sample/dpo/epoch1", "pairs"]
    text = benchmarks_markdown(table)
    assert "| sample/dpo/epoch1 | 6.0 | 5.0 | 300.0 | 75.0% |" in text
    assert "**8.0**" in text


def test_malformed_record_is_named(tmp_path):
    (tmp_path / "bad.tsv").write_text("wall\n3\n")
    with pytest.raises(InputError, match="bad.tsv"):
        collect_benchmarks(tmp_path)


def test_no_records_is_an_error(tmp_path):
    with pytest.raises(InputError, match="no benchmark records"):
        collect_benchmarks(tmp_path)
