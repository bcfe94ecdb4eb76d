"""Findings name the container of their process: on a recorded snapshot
(tests/doctor/cases/close-wait-leak-critical.json) whose nginx runs in a pod."""

from __future__ import annotations

import json
from pathlib import Path

from halfopen.diagnose.context import Options
from halfopen.diagnose.report import diagnose
from halfopen.model.container import Container
from halfopen.model.process import Process
from halfopen.model.snapshot import Snapshot

CASE = Path(__file__).parent.parent / "doctor" / "cases" / "close-wait-leak-critical.json"
POD = Container("containerd", "8c3f" + "0" * 60, "nginx", "web-7f9", "shop",
                "005f082b-5fd9-4650-8ef4-473e63bc2d13")


def snapshot(container: Container | None) -> Snapshot:
    snap = Snapshot.from_dict(json.loads(CASE.read_text())["snapshot"])
    # the case records sockets and limits; the owner scan's process record is
    # where a live snapshot keeps the container
    snap.processes[812] = Process(812, "nginx", 900, [], container)
    # saved and loaded again, as `doctor --save-snapshot` and `--snapshot` do
    return Snapshot.from_dict(json.loads(json.dumps(snap.to_dict())))


def close_wait(report):
    (f,) = [f for f in report.findings if f.id == "close-wait-leak"]
    return f


def test_title_and_subject_name_the_pod():
    f = close_wait(diagnose(snapshot(POD)))
    assert f.title.startswith("nginx (pid 812, pod shop/web-7f9) holds 150 CLOSE_WAIT sockets")
    assert f.subject.container == POD
    assert f.subject.pid == 812  # the rest of the subject as before


def test_docker_container_by_name_and_host_process_unchanged():
    docker = Container("docker", "3f4e" + "1" * 60, "cache-redis-1")
    assert close_wait(diagnose(snapshot(docker))).title.startswith(
        "nginx (pid 812, docker cache-redis-1) holds")
    plain = close_wait(diagnose(snapshot(None)))
    assert plain.title.startswith("nginx (pid 812) holds") and plain.subject.container is None


def test_doctor_focus_on_a_container():
    for word, kept in (("shop/web-7f9", True), ("web-7f9", True), ("8c3f00", True),
                       ("shop/other", False), ("nginx-other", False)):
        report = diagnose(snapshot(POD), Options(container=word))
        assert any(f.id == "close-wait-leak" for f in report.findings) is kept, word
