"""`listener bench`: the numbers a user reads on their own device before choosing a hop.

Runs the real command on the exported tiny model (real onnxruntime session, real
log-mel), checks the JSON a script would read, the human output, and the clear error
for a wrong model path; the CPU/ISA detection is checked on /proc/cpuinfo texts of
the devices the project targets.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from listener.__main__ import main
from listener.export.bench import cpu_info, shortest_hop
from tests.helpers import assert_clean_error, run_cli

PI5_CPUINFO = (
    "processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 "
    "atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\n"
) + """CPU implementer\t: 0x41
CPU part\t: 0xd0b
Hardware\t: BCM2712
Model\t: Raspberry Pi 5 Model B Rev 1.0
"""
PI4_CPUINFO = """processor\t: 0
Features\t: fp asimd evtstrm crc32 cpuid
CPU part\t: 0xd08
Model\t: Raspberry Pi 4 Model B Rev 1.4
"""
X86_CPUINFO = """processor\t: 0
model\t\t: 167
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse sse2 ssse3 sse4_1 avx fma avx2 avx512f avx512_vnni
"""


def test_bench_json_reports_latency_hop_memory_provider_isa(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["bench", "--model", str(tiny_model_dir), "--runs", "3", "--threads", "1",
               "--json"])
    assert rc == 0
    r = json.loads(capsys.readouterr().out)
    assert r["provider"] == "CPUExecutionProvider" and r["precision"] == "int8"
    assert r["audio_model_file"].endswith("audio_model_quantized.onnx")
    assert r["threads"] == 1 and r["runs"] == 3 and r["hop_s"] == 1.0
    assert 0 < r["features_hop_ms"] < r["window_ms"]
    assert 0 < r["tower_ms"] <= r["tower_p90_ms"]
    assert r["window_ms"] <= r["window_p90_ms"]
    # the shortest hop leaves half of it idle: one p90 window fits in 50 %
    assert r["shortest_hop_s"] >= r["window_p90_ms"] / 1000 / 0.5 - 1e-9
    assert r["peak_rss_mb"] >= r["peak_rss_before_model_mb"] > 0  # in-process: torch came first
    assert isinstance(r["isa"], list) and r["int8_path"] and r["machine"]


def test_bench_peak_rss_is_its_own_not_its_parents(tiny_model_dir: Path) -> None:
    """Linux carries ru_maxrss across fork + exec: started by a 600 MB parent, `listener
    bench` must still report its own peak, not the parent's."""
    parent = (
        "import json, subprocess, sys\n"
        "ballast = bytearray(600 * 1024 * 1024)\n"
        "for i in range(0, len(ballast), 4096): ballast[i] = 1\n"
        f"out = subprocess.run([sys.executable, '-m', 'listener', 'bench', '--model', "
        f"{str(tiny_model_dir)!r}, '--runs', '2', '--threads', '1', '--json'], "
        "capture_output=True, text=True, check=True).stdout\n"
        "print(json.loads(out)['peak_rss_mb'])\n"
    )
    proc = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert 0 < float(proc.stdout.strip()) < 400


def test_bench_text_output_and_fp32(tiny_model_dir: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["bench", "--model", str(tiny_model_dir), "--runs", "2", "--threads", "1",
               "--precision", "fp32", "--hop", "0.5"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "audio_model.onnx" in out and "CPUExecutionProvider" in out
    assert "shortest sustainable hop" in out and "peak RSS" in out
    assert "log-mel of a 0.5-s hop" in out


def test_bench_bad_model_path_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    assert_clean_error(run_cli("bench", "--model", missing), str(missing))
    assert_clean_error(run_cli("bench", "--model", missing, "--runs", "0"), "--runs")


def test_cpu_info_names_the_int8_path() -> None:
    pi5 = cpu_info(PI5_CPUINFO)
    assert pi5["cpu"] == "Raspberry Pi 5 Model B Rev 1.0"
    assert "asimddp" in pi5["isa"] and pi5["int8_path"].startswith("dotprod")
    pi4 = cpu_info(PI4_CPUINFO)
    assert pi4["isa"] == ["asimd"] and "without dot product" in pi4["int8_path"]
    x86 = cpu_info(X86_CPUINFO)
    assert x86["cpu"] == "Intel(R) Xeon(R) Processor"
    assert x86["isa"][:2] == ["avx512_vnni", "avx512f"] and x86["int8_path"] == "AVX-512 VNNI"


def test_shortest_hop_keeps_headroom() -> None:
    assert shortest_hop(0.05) == pytest.approx(0.1)
    assert shortest_hop(0.06) == pytest.approx(0.2)
    assert shortest_hop(0.3) == pytest.approx(0.6)
    assert shortest_hop(1.2, headroom=0.5) == pytest.approx(2.4)


def test_bench_streams_runs_n_real_time_streams_on_one_model(hearing_model_dir: Path) -> None:
    r = run_cli("bench", "--model", hearing_model_dir, "--streams", "2", "--seconds", "11",
                "--json", timeout=120)
    assert r.returncode == 0, r.stderr
    row = json.loads(r.stdout)
    assert row["streams"] == 2 and row["due"] == row["scored"] + 0 >= 2 * 2
    assert row["skipped_min"] == row["skipped_max"] == 0 and not row["errors"]
    assert 0 < row["p50_ms"] <= row["p95_ms"] and row["cpu_s_per_audio_s"] > 0
    assert row["rss_peak_mb"] > 0
    bad = run_cli("bench", "--model", hearing_model_dir, "--streams", "0")
    assert_clean_error(bad, "--streams must be at least 1")
