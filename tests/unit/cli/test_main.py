"""``main()`` in process, for the paths that fail before anything starts: one line, right exit code."""

from __future__ import annotations

import pytest

from losant_async.cli import main

APP = "5" * 24


@pytest.fixture(autouse=True)
def _no_losant_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LOSANT_URL", "LOSANT_BROKER", "LOSANT_APPLICATION_ID", "LOSANT_ACCESS_KEY",
                 "LOSANT_ACCESS_SECRET", "LOSANT_API_TOKEN", "LOSANT_MQTT_HOST", "LOSANT_MQTT_PORT",
                 "LOSANT_MQTT_TRANSPORT", "LOSANT_LOG"):
        monkeypatch.delenv(name, raising=False)


def test_missing_credentials_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--application", APP, "--key", "k", "--secret", "very-secret"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("losant-async: error: ") and "--token" in lines[0]
    assert "very-secret" not in captured.err + captured.out
    assert "Traceback" not in captured.err


def test_a_rate_over_losants_limit_is_refused_before_connecting(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOSANT_APPLICATION_ID", APP)
    monkeypatch.setenv("LOSANT_ACCESS_KEY", "k")
    monkeypatch.setenv("LOSANT_ACCESS_SECRET", "s")
    monkeypatch.setenv("LOSANT_API_TOKEN", "t")
    assert main(["simulate", "--rate", "10"]) == 2
    assert "30 per 15 s" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["simulate", "--devices", "none"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2


def test_a_missing_optional_dependency_is_one_line_naming_the_extra(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import losant_async.cli._commands as commands

    async def no_jsonschema(*args: object) -> int:
        raise ModuleNotFoundError("No module named 'jsonschema'", name="jsonschema")

    monkeypatch.setattr(commands, "run_emulator", no_jsonschema)
    assert main(["emulator"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "losant-async: error: module 'jsonschema' is missing: pip install 'losant-async[emulator]'"


def _report(commands_sent: int, commands_received: int, commands_due: int | None = None) -> object:
    from losant_async.simulator import SimulationConfig, SimulationStats, build_report

    config = SimulationConfig(devices=2, duration=1.0)
    stats = SimulationStats(states_sent=config.expected(), commands_sent=commands_sent,
                            commands_received=commands_received,
                            commands_scheduled=commands_sent if commands_due is None else commands_due)
    return build_report(config, stats, gateways=0, run_seconds=1.0, connect_seconds=0.1,
                        states_stored=config.expected(), interrupted=False, embedded=True, peak_rss=None,
                        machine={})


@pytest.mark.parametrize(("sent", "received", "due", "code"),
                         [(4, 4, 4, 0), (4, 3, 4, 1), (4, 0, 4, 1), (4, 4, 10, 1)])
def test_a_lost_or_unsent_command_makes_simulate_exit_non_zero(
    sent: int, received: int, due: int, code: int, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import losant_async.cli._commands as commands

    async def fake_run(*args: object) -> object:
        return _report(sent, received, due)

    monkeypatch.setattr(commands, "run_simulate", fake_run)
    assert main(["simulate", "--devices", "2", "--duration", "1"]) == code
    out = capsys.readouterr().out
    assert ("FAILED" in out) == bool(code) and "commands lost" in out
    assert ("due but never sent" in out) == (due > sent)


def test_a_bad_log_level_is_a_usage_error(capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOSANT_LOG", "loud")
    assert main(["simulate"]) == 2
    assert "LOSANT_LOG must be debug or info" in capsys.readouterr().err
