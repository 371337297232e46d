"""The demo's terminal shows its steps and summary; everything else goes to the log file."""

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from llmhub.demo import captured_output, format_value, load_definitions, step


def _console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=100, force_terminal=False), buffer


def test_the_log_file_gets_what_the_steps_print_and_the_terminal_only_the_steps(
    tmp_path: Path,
) -> None:
    # Regression: hundreds of dbt and Great Expectations INFO lines surrounded the demo summary.
    console, terminal = _console()
    log = tmp_path / "logs" / "demo.log"
    logger = logging.getLogger("demo-test")

    def noisy() -> int:
        print("python print from a step")
        os.write(2, b"fd 2 write from a step\n")
        subprocess.run([sys.executable, "-c", "print('dbt subprocess line')"], check=True)
        logging.getLogger("demo-test").warning("a library log line")
        return 7

    with captured_output(log):
        # Bound to sys.stderr inside the block, as the demo's logging.basicConfig is.
        handler = logging.StreamHandler()
        logger.addHandler(handler)
        try:
            result = step(console, "transform_hourly_job", noisy)
        finally:
            logger.removeHandler(handler)

    detail = log.read_text()
    shown = terminal.getvalue()
    assert result == 7
    for line in (
        "python print from a step",
        "fd 2 write from a step",
        "dbt subprocess line",
        "a library log line",
    ):
        assert line in detail
        assert line not in shown
    assert shown.startswith("done transform_hourly_job (")


def test_output_goes_back_to_the_terminal_after_the_block(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    with captured_output(tmp_path / "demo.log"):
        print("inside")
    print("after")

    out, _ = capfd.readouterr()
    assert "after" in out
    assert "inside" not in out


def test_a_failing_step_restores_the_terminal(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit), captured_output(tmp_path / "demo.log"):
        raise SystemExit("ingestion_job failed")
    print("after the failure")

    assert "after the failure" in capfd.readouterr().out


def test_the_code_location_is_the_one_the_workspace_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "demo_location.py").write_text(
        "import dagster as dg\n\ndefs = dg.Definitions(assets=[dg.AssetSpec('x')])\n"
    )
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        "load_from:\n  - python_module:\n      module_name: demo_location\n"
        "      location_name: test\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    defs = load_definitions(workspace)

    assert [spec.key.to_user_string() for spec in defs.resolve_all_asset_specs()] == ["x"]


def test_anomaly_values_keep_their_digits_below_one() -> None:
    # Regression: a cost per request of $0.016 against $0.00095 read "0.0" against "0.0".
    assert format_value(0.0161575) == "0.0162"
    assert format_value(0.00094871) == "0.000949"
    assert format_value(10397.2) == "10,397.2"
    assert format_value(0.0) == "0.0"
