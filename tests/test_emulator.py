"""The embedded emulator is one server per process: moto's state is process-wide, and MOTO_PORT
(read when a service integration or a Batch job starts) must keep naming a server that is up."""

from __future__ import annotations

import os

import boto3

from workflow_manager.emulator.server import emulator_client_kwargs, start_embedded_emulator


def test_every_caller_shares_one_server_until_the_last_handle_is_released():
    first = start_embedded_emulator()
    second = start_embedded_emulator()
    try:
        assert second.port == first.port
        assert os.environ["MOTO_PORT"] == str(first.port)
        first.stop()
        first.stop()  # releasing a handle twice releases it once
        sfn = boto3.client("stepfunctions", **emulator_client_kwargs(second.endpoint_url))
        assert "stateMachines" in sfn.list_state_machines()
    finally:
        second.stop()
