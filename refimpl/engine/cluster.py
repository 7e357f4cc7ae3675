"""Where a sweep's runs execute: a dask.distributed cluster on this machine, or one given by its address.

``refimpl sweep`` hands every run to dask.distributed as one task (:mod:`refimpl.engine.sweep`). This
module is the one place that talks to dask about *where*:

* :func:`open_client` starts a :class:`distributed.LocalCluster` in this process — ``workers`` worker
  processes with one thread each, listening on 127.0.0.1 only, the dashboard off unless asked for — or
  connects to an existing scheduler (``tcp://HOST:8786``, ``tls://HOST:8786``); the sweep code is the
  same either way.
* :func:`check_scheduler_address` refuses, before anything connects or is written, a plaintext address
  that is not this machine. A dask scheduler runs whatever functions its clients send it, so whoever can
  reach an unencrypted, unauthenticated ``tcp://`` port can run code as the cluster's user, and the
  traffic (configurations, results) can be read and changed on the way. Remote clusters should use
  ``tls://`` with certificates (a :class:`distributed.security.Security` object, or the dask config keys
  ``distributed.comm.tls.*``); ``insecure=True`` (``--insecure``) accepts a plain address knowingly,
  for a network you trust.
* :func:`allowed_failures` reads the scheduler's ``distributed.scheduler.allowed-failures``: how many
  times a task whose worker died is rescheduled before dask gives up on it (``KilledWorker``). A sweep
  relies on that retry: the rescheduled run resumes from its checkpoint.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
from collections.abc import Iterator
from typing import Any

__all__ = ["DASHBOARD_ADDRESS", "allowed_failures", "check_scheduler_address", "open_client"]

#: Where ``dashboard=True`` serves the local cluster's dashboard (loopback only; dask picks another port
#: when this one is taken).
DASHBOARD_ADDRESS = "127.0.0.1:8787"

# Protocols dask encrypts (and, with client certificates, authenticates) / those it sends in the clear.
_ENCRYPTED = ("tls", "wss")
_PLAINTEXT = ("tcp", "ws", "ucx")


def _is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine's loopback interface (names are not resolved: a name may change)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost
        return False


def check_scheduler_address(address: str, *, insecure: bool = False) -> str:
    """Return ``address`` if a sweep may send its runs there; raise a one-line ``ValueError`` if not.

    Accepted: ``tls://`` / ``wss://`` addresses (encrypted), ``inproc://`` (this process), and plaintext
    ``tcp://`` / ``ws://`` / ``ucx://`` addresses on the loopback interface (``127.0.0.0/8``, ``::1``,
    ``localhost``). A plaintext address of another host needs ``insecure=True`` (module docstring). An
    address without a protocol is ``tcp://``, as in dask.

    Parameters
    ----------
    address : str
        The scheduler's address, e.g. ``"tcp://127.0.0.1:8786"`` or ``"tls://10.0.0.5:8786"``.
    insecure : bool, default False
        Accept a plaintext address of another host.

    Examples
    --------
    >>> check_scheduler_address("tcp://127.0.0.1:8786")
    'tcp://127.0.0.1:8786'
    >>> check_scheduler_address("tcp://10.0.0.5:8786", insecure=True)
    'tcp://10.0.0.5:8786'
    """
    from distributed.comm.addressing import parse_host_port

    if not isinstance(address, str):
        raise TypeError(f"scheduler address must be a string such as 'tls://HOST:8786', got {address!r}")
    scheme, sep, location = address.strip().partition("://")
    if not sep:
        scheme, location = "tcp", address.strip()
    scheme = scheme.lower()
    if scheme in _ENCRYPTED or scheme == "inproc":
        return address
    if scheme not in _PLAINTEXT:
        raise ValueError(f"scheduler address {address!r}: unknown protocol {scheme!r} (expected one of "
                         f"{', '.join(s + '://' for s in _ENCRYPTED + _PLAINTEXT)})")
    try:
        host, _ = parse_host_port(location, default_port=8786)
    except ValueError as err:
        raise ValueError(f"scheduler address {address!r}: {err}") from None
    if not host:
        raise ValueError(f"scheduler address {address!r} names no host")
    if _is_loopback(host) or insecure:
        return address
    raise ValueError(
        f"refusing the unencrypted scheduler address {address!r}: {host} is not this machine, and a dask "
        "scheduler runs any code its clients send, so whoever reaches this port can run code on the "
        "cluster and read or change the traffic; use a tls:// address (certificates through "
        "distributed.security.Security or the dask config distributed.comm.tls.*), or pass --insecure "
        "(insecure=True) if you trust every machine on that network")


@contextlib.contextmanager
def open_client(*, workers: int | None = None, scheduler: str | None = None, insecure: bool = False,
                dashboard: bool = False, security: Any = None) -> Iterator[Any]:
    """Yield a :class:`distributed.Client` on a new local cluster or on the scheduler at ``scheduler``.

    Parameters
    ----------
    workers : int, optional
        Local cluster only: the number of worker processes (default ``os.cpu_count()``), one thread
        each — every run limits its numba/BLAS threads itself (:func:`refimpl.threads.thread_limit`).
    scheduler : str, optional
        Address of an existing scheduler (:func:`check_scheduler_address`); ``None`` starts a
        :class:`distributed.LocalCluster` in this process, listening on 127.0.0.1, closed on exit.
    insecure : bool, default False
        Accept a plaintext ``scheduler`` address of another host.
    dashboard : bool, default False
        Local cluster only: serve dask's dashboard on :data:`DASHBOARD_ADDRESS` (needs bokeh).
    security : distributed.security.Security, optional
        TLS settings for a ``tls://`` scheduler (default: the dask config ``distributed.comm.tls.*``).

    Yields
    ------
    distributed.Client
        Not set as dask's default client, so it does not change how other dask code in the process runs.
    """
    from distributed import Client, LocalCluster

    if scheduler is not None:
        if workers is not None:
            raise ValueError("workers applies to the local cluster only; a cluster given by its scheduler "
                             "address has its own workers")
        if dashboard:
            raise ValueError("dashboard applies to the local cluster only; a remote cluster serves its own")
        address = check_scheduler_address(scheduler, insecure=insecure)
        with Client(address, security=security, set_as_default=False) as client:
            yield client
        return
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    with LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                      host="127.0.0.1", dashboard_address=DASHBOARD_ADDRESS if dashboard else None,
                      # dask's own warnings (e.g. about a restarted worker) would tear the progress bar;
                      # the sweep reports restarted runs itself.
                      silence_logs=logging.ERROR) as cluster, \
            Client(cluster, set_as_default=False) as client:
        yield client


def allowed_failures(client: Any) -> int | None:
    """How often the scheduler reschedules a task whose worker died (``None`` if it cannot be read).

    This is the scheduler's ``distributed.scheduler.allowed-failures`` setting (dask's default: 3); a
    task whose workers died more often fails with ``distributed.KilledWorker``.
    """
    try:
        return int(client.run_on_scheduler(_scheduler_allowed_failures))
    except Exception:  # an old or restricted scheduler: the sweep still runs, it just cannot say
        return None


def _scheduler_allowed_failures(dask_scheduler) -> int:
    return dask_scheduler.allowed_failures
