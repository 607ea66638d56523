"""A soak from start to end: arrange the fleet, run the days with faults, drain, judge, report."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import sys
import threading
import time
from typing import TYPE_CHECKING

import redis
import sqlalchemy as sa
from sqlalchemy import exc

from common.clock_store import shared_clock
from common.compute.simulated import SimulatedDriver
from common.db import make_engine, make_session_factory
from common.run_state import IN_FLIGHT
from common.settings import Settings
from scheduled_images.soak import arrange
from scheduled_images.soak.checks import (
    ScheduleRow,
    Window,
    due_occurrences,
    judge,
    load_schedules,
)
from scheduled_images.soak.faults import FaultInjector, fault_plan
from scheduled_images.soak.fleet import draw_fleet, fleet_arrays, tenant_names
from scheduled_images.soak.plots import plot_lateness, plot_load
from scheduled_images.soak.recorder import CloudRecorder
from scheduled_images.soak.report import lateness_figures, summary, summary_line, write_summary
from scheduled_images.soak.servers import Servers
from scheduled_images.soak.service import Service, soak_environment
from scheduler.planning import lower_bound
from workers.celery_app import RETENTION_QUEUE

if TYPE_CHECKING:
    from scheduled_images.soak.command import SoakOptions

#: Real seconds between the plan taking effect and the first slot that counts.
START_MARGIN_S = 1.0
#: Real seconds the soak waits, past its last day, for the last due periods to end: a run
#: in flight ends by its time-out once the tick runs, and a killed tick pool may be starting.
DRAIN_S = 120.0
#: Real seconds it waits for the images in flight and their prunes once schedules pause.
QUIESCE_S = 30.0
SECONDS_PER_GB = 10.0
FINAL = ("done", "failed", "timed_out", "skipped", "cancelled")


@dataclasses.dataclass
class Timing:
    real_start: float = 0.0
    real_end: float = 0.0


class Soak:
    def __init__(
        self, options: SoakOptions, settings: Settings, servers: Servers, stopping: threading.Event
    ) -> None:
        self.options = options
        self.servers = servers
        self.stopping = stopping
        self.settings = settings.replace(
            database_url=servers.database_url,
            broker_url=servers.broker_url,
            state_dir=servers.state_dir,
            auth_tokens_file=servers.state_dir / "tokens.json",
            compute_driver="simulated",
        )
        self.engine = make_engine(servers.database_url, pool_size=3, max_overflow=2)
        self.sessions = make_session_factory(self.engine)
        self.clock = shared_clock(self.sessions, options.speed)
        self.cap = 0
        self.planned_share: float | None = None
        self.planned: list[ScheduleRow] = []
        self.timing = Timing()

    def echo(self, line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    def run(self) -> int:
        log = (self.options.report / "service.log").open("w")
        env = soak_environment(
            self.options.speed,
            self.options.days,
            self.options.seed,
            "compute-errors" in self.options.faults,
        )
        service = Service(self.settings, env, log)
        try:
            own, window = self.arrange(service)
            recorder = CloudRecorder(self.sessions, self.clock, window.start)
            injector = FaultInjector(
                fault_plan(self.options.faults, window.start, self.options.days),
                self.clock,
                window.start,
                service,
                self.servers,
                self.options.seed,
            )
            self.soak_days(service, recorder, injector, window)
            self.drain(window)
            self.quiesce()
            recorder.read_pass(0.0)
        finally:
            service.stop()
            log.close()
        return self.report(recorder, injector, own, window)

    def arrange(self, service: Service) -> tuple[dict[str, str], Window]:
        o = self.options
        fleet = draw_fleet(o.servers, o.tenants, o.seed, SECONDS_PER_GB)
        days, durations = fleet_arrays(fleet)
        bound = lower_bound(days, durations).value
        self.cap = o.cap or max(1, int(-(-bound * o.cap_factor // 1)))
        self.echo(
            f"soak: {o.servers} servers of {o.tenants} tenants; lower bound {bound:g}, "
            f"cap {self.cap}"
        )
        driver = SimulatedDriver(self.sessions, seconds_per_gb=SECONDS_PER_GB, clock=self.clock)
        ids = arrange.add_fleet_to_cloud(driver, fleet)
        own = arrange.add_own_images(driver, fleet, ids)
        tokens = arrange.make_tokens(self.settings.auth_tokens_file, tenant_names(o.tenants))
        service.start_api(self.stopping)
        arrange.set_cap(service.base, tokens, self.cap)
        arrange.enable_fleet(service.base, fleet, ids, tokens, self._enabled)
        arrange.record_durations(self.sessions, fleet, ids)
        self.echo("")
        plan = arrange.plan_fleet(self.sessions, self.cap, self.clock)
        self.planned_share = plan.on_day_share
        with self.sessions() as session:
            self.planned = load_schedules(session)
        self.echo(
            f"soak: planned peak {plan.peak:g} under cap {self.cap}, {plan.moved} moved, "
            f"{plan.on_day_share:.1%} weekly on their day"
        )
        arrange.hold_schedules(self.sessions, self.clock.now())
        booting = time.monotonic()
        service.start_back_end(self.stopping)
        self.echo(f"soak: beat and the pools up in {time.monotonic() - booting:.1f} s")
        start = _next_minute(self.clock.now() + dt.timedelta(seconds=START_MARGIN_S * o.speed))
        arrange.start_window(self.sessions, start)
        return own, Window(start, start + dt.timedelta(days=o.days))

    def _enabled(self, done: int) -> None:
        if done % 100 == 0 or done == self.options.servers:
            print(f"\rsoak: enabled {done}/{self.options.servers}", end="", file=sys.stderr)

    def soak_days(
        self,
        service: Service,
        recorder: CloudRecorder,
        injector: FaultInjector,
        window: Window,
    ) -> None:
        stop_threads = threading.Event()
        threads = [
            threading.Thread(target=recorder.run, args=(stop_threads, window.end), daemon=True),
            threading.Thread(target=injector.run, args=(stop_threads,), daemon=True),
        ]
        for thread in threads:
            thread.start()
        time.sleep(
            max(self.clock.real_seconds((window.start - self.clock.now()).total_seconds()), 0)
        )
        self.timing.real_start = time.monotonic()
        try:
            while self.clock.now() < window.end and not self.stopping.wait(0.5):
                gone = service.restart_exited()
                if gone is not None:
                    injector.note("exited", f"{gone.label} exited ({gone.process.returncode})")
                with contextlib.suppress(exc.SQLAlchemyError):  # PostgreSQL restarting
                    self.progress(recorder, injector, window)
        finally:
            stop_threads.set()
            for thread in threads:
                thread.join(30)
        print("", file=sys.stderr)

    def progress(self, recorder: CloudRecorder, injector: FaultInjector, window: Window) -> None:
        day = (self.clock.now() - window.start) / dt.timedelta(days=1)
        width = 30
        filled = int(width * min(day / self.options.days, 1))
        with self.sessions() as session:
            done = session.scalar(sa.text("SELECT count(*) FROM runs WHERE state = 'done'"))
        print(
            f"\r[{'#' * filled}{'.' * (width - filled)}] day {day:5.2f}/{self.options.days:g}"
            f"  runs done {done}  in flight {recorder.latest()}  faults {injector.count()}  ",
            end="",
            file=sys.stderr,
            flush=True,
        )

    def drain(self, window: Window) -> None:
        """Wait for every due period's run to end (or give up after DRAIN_S)."""
        with self.sessions() as session:
            due = sum(len(due_occurrences(s, window)) for s in load_schedules(session))
        deadline = time.monotonic() + DRAIN_S
        while time.monotonic() < deadline and not self.stopping.is_set():
            if self._ended(window) >= due:
                break
            time.sleep(0.5)
        self.timing.real_end = time.monotonic()

    def _ended(self, window: Window) -> int:
        with self.sessions() as session:
            return int(
                session.scalar(
                    sa.text(
                        "SELECT count(*) FROM runs WHERE trigger = 'schedule'"
                        " AND state = ANY(:final)"
                        " AND scheduled_for >= :start AND scheduled_for < :end"
                    ),
                    {"final": list(FINAL), "start": window.start, "end": window.end},
                )
            )

    def quiesce(self) -> None:
        """Pause every schedule, let the images in flight end, then wait for the prunes
        queued to be done: the end state that retention is judged on (servers with a run
        still open are judged without).

        A run that ends while the prunes are awaited publishes its prune after the queue was
        seen empty, and its server would be judged before it: so no run in flight first.
        """
        arrange.hold_schedules(self.sessions, self.clock.now())
        deadline = time.monotonic() + QUIESCE_S
        while time.monotonic() < deadline and not self.stopping.is_set():
            with self.sessions() as session:
                if not session.scalar(
                    sa.text("SELECT count(*) FROM runs WHERE state = ANY(:in_flight)"),
                    {"in_flight": sorted(IN_FLIGHT)},
                ):
                    break
            time.sleep(0.5)
        broker = redis.Redis.from_url(self.servers.broker_url)
        quiet = 0
        while quiet < 3 and time.monotonic() < deadline and not self.stopping.is_set():
            quiet = 0 if broker.llen(RETENTION_QUEUE) else quiet + 1
            time.sleep(0.5)
        broker.close()

    def report(
        self,
        recorder: CloudRecorder,
        injector: FaultInjector,
        own: dict[str, str],
        window: Window,
    ) -> int:
        o = self.options
        judged, lines = judge(
            self.sessions,
            list(recorder.images.values()),
            recorder.samples,
            own,
            window,
            self.cap,
            self.clock.now(),
            self.planned,
        )
        wall = self.timing.real_end - self.timing.real_start
        finished = self._finished(window)
        content = summary(
            {
                "servers": o.servers,
                "tenants": o.tenants,
                "days": o.days,
                "speed": o.speed,
                "cap": self.cap,
                **judged.figures,
                **lateness_figures(judged.lateness_s),
                "faults": injector.injected,
                "wall_s": round(wall, 1),
                "runs_per_s": round(finished / wall, 1) if wall > 0 else None,
            }
        )
        write_summary(o.report, content)
        if lines:
            (o.report / "violations.txt").write_text("\n".join(lines) + "\n")
        plot_load(
            o.report / "load.png",
            recorder.samples,
            judged.planned,
            self.cap,
            window.start,
            injector.injected,
        )
        plot_lateness(o.report / "lateness.png", judged.lateness_s)
        self.engine.dispose()
        print(summary_line(content) + f"; planned on day {self.planned_share}", flush=True)
        return 0 if content["ok"] else 1

    def _finished(self, window: Window) -> int:
        with self.sessions() as session:
            return int(
                session.scalar(
                    # Runs the pipeline carried: a run skipped without starting is not one.
                    sa.text(
                        "SELECT count(*) FROM runs"
                        " WHERE finished_at >= :start AND started_at IS NOT NULL"
                    ),
                    {"start": window.start},
                )
            )


def _next_minute(moment: dt.datetime) -> dt.datetime:
    return moment.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
