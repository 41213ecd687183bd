"""Reach the machine's PostgreSQL and Redis; start throwaway servers for failure tests."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest

PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def unavailable(reason: str) -> None:
    """Fail under CI (services must be there), skip with the reason elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A TCP port nothing listens on right now, and not handed out before in this process: servers
    given several ports before any of them starts (a cluster's nodes and buses) never share one."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    """Block until something accepts on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout}s")


class PostgresDatabase:
    """A fresh database on the machine's PostgreSQL, dropped at the end."""

    def __init__(self) -> None:
        import psycopg2

        self.name = f"t_{uuid.uuid4().hex[:12]}"
        try:
            admin = psycopg2.connect(PG_ADMIN_URL, connect_timeout=3)
        except psycopg2.OperationalError as exc:
            unavailable(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc}")
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{self.name}"')
        admin.close()
        self.url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{self.name}"

    def __enter__(self) -> PostgresDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.drop()  # also when what followed the creation failed or skipped

    def drop(self) -> None:
        import psycopg2

        admin = psycopg2.connect(PG_ADMIN_URL, connect_timeout=3)
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        admin.close()

    def connections(self, application_name: str | None = "aigen") -> int:
        """How many sessions the service (None: anyone, PgBouncer included) holds open to this database."""
        import psycopg2

        admin = psycopg2.connect(PG_ADMIN_URL, connect_timeout=3)
        with admin.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = %s AND (%s IS NULL OR application_name = %s)",
                (self.name, application_name, application_name),
            )
            count = cur.fetchone()[0]
        admin.close()
        return count


def require_redis(url: str = REDIS_URL):
    """A client for the machine's Redis, or skip/fail."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        unavailable(f"Redis is not reachable at {url}: {exc}")
    return client


def delete_namespace(client, namespace: str) -> int:
    """Delete the keys under `namespace:` and only those (SCAN, never FLUSHDB); returns how many."""
    keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
    if keys:
        client.unlink(*keys)
    return len(keys)


class RedisServer:
    """A throwaway redis-server on a free port that a test may stop, freeze and restart."""

    def __init__(self, *extra: str) -> None:
        """`extra`: more redis-server arguments (`--replicaof`, ...)."""
        self.binary = shutil.which("redis-server")
        if not self.binary:
            unavailable("redis-server is not installed")
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="redis-test-")
        self.process: subprocess.Popen | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.extra = extra

    def start(self) -> RedisServer:
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self.dir,
            *self.extra,
        ]
        log = Path(self.dir, "redis.log")
        with log.open("wb") as output:
            self.process = subprocess.Popen(args, stdout=output, stderr=subprocess.STDOUT)
        try:
            wait_for_port(self.port)
        except TimeoutError as exc:
            said = log.read_text(errors="replace")[-2000:]
            raise TimeoutError(f"{exc}; redis-server exited with {self.process.poll()}:\n{said}") from None
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def freeze(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def close(self) -> None:
        if self.process and self.process.poll() is None:
            self.thaw()
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class TlsRedisServer(RedisServer):
    """A throwaway redis-server that speaks only TLS, with a self-signed certificate for 127.0.0.1.
    `url` trusts that certificate; `untrusted_url` trusts another one."""

    def __init__(self) -> None:
        super().__init__()
        self.certificate = self._self_signed("server")
        stranger = self._self_signed("stranger")
        key = self.certificate.replace(".pem", ".key")
        self.extra = ("--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no")
        self.extra += ("--tls-cert-file", self.certificate, "--tls-key-file", key)
        self.url = f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={self.certificate}"
        self.untrusted_url = f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={stranger}"

    def _self_signed(self, name: str) -> str:
        """`<dir>/<name>.pem` and its key `<name>.key`, valid a day for the IP 127.0.0.1."""
        certificate = os.path.join(self.dir, f"{name}.pem")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
            + ["-subj", f"/CN={name}", "-addext", "subjectAltName=IP:127.0.0.1"]
            + ["-keyout", certificate.replace(".pem", ".key"), "-out", certificate],
            check=True,
            capture_output=True,
        )
        return certificate


class PostgresServer:
    """A throwaway PostgreSQL cluster (initdb into a temp folder) on a free port."""

    def __init__(self) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not bins:
            unavailable("PostgreSQL server binaries (initdb) are not installed")
        self.bin = os.path.dirname(bins[-1])
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="pg-test-")
        self.data = os.path.join(self.dir, "data")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as_owner:
            shutil.chown(self.dir, "postgres")
        self._run("initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def _run(self, tool: str, *args: str) -> None:
        command = [*self._as_owner, os.path.join(self.bin, tool), *args]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)

    def start(self) -> PostgresServer:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c fsync=off"
        log = os.path.join(self.dir, "server.log")
        self._run("pg_ctl", "-D", self.data, "-o", options, "-l", log, "-w", "start")
        return self

    def stop(self, mode: str = "immediate") -> None:
        self._run("pg_ctl", "-D", self.data, "-m", mode, "-w", "stop")

    def _processes(self) -> list[int]:
        """The postmaster and its children (backends, background workers)."""
        with open(os.path.join(self.data, "postmaster.pid")) as pidfile:
            postmaster = int(pidfile.readline())
        children = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as stat:
                        if int(stat.read().rsplit(")", 1)[1].split()[1]) == postmaster:
                            children.append(int(entry))
                except (OSError, IndexError, ValueError):
                    continue
        return [postmaster, *children]

    def freeze(self) -> None:
        """SIGSTOP every process of the cluster: the kernel still accepts, nothing ever answers."""
        for pid in self._processes():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self._processes():
            os.kill(pid, signal.SIGCONT)

    def close(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(self.dir, ignore_errors=True)


def pgbouncer_binary() -> str | None:
    """Where pgbouncer is installed (on PATH, else Debian's /usr/sbin), or None."""
    found = shutil.which("pgbouncer")
    if found is None and os.path.exists("/usr/sbin/pgbouncer"):
        found = "/usr/sbin/pgbouncer"
    return found


def require_pgbouncer() -> str:
    """pgbouncer's path, or skip (fail under CI) saying it is absent."""
    binary = pgbouncer_binary()
    if binary is None:
        unavailable("pgbouncer is not installed (Debian: apt-get install pgbouncer)")
    return binary


class PgBouncer:
    """PgBouncer (Debian package `pgbouncer`) in front of the machine's PostgreSQL, on a free port, in
    transaction pooling: at most `pool_size` server connections per database, whatever the clients."""

    def __init__(self, pool_size: int = 10, mode: str = "transaction") -> None:
        self.binary = require_pgbouncer()
        self.port = free_port()
        self.pool_size = pool_size
        self.dir = tempfile.mkdtemp(prefix="pgbouncer-test-")
        target = urlsplit(PG_ADMIN_URL)
        ini = f"""[databases]
* = host={target.hostname} port={target.port or 5432}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {self.dir}/users.txt
pool_mode = {mode}
default_pool_size = {pool_size}
max_client_conn = 2000
ignore_startup_parameters = extra_float_digits
logfile = {self.dir}/pgbouncer.log
"""
        Path(self.dir, "pgbouncer.ini").write_text(ini)
        Path(self.dir, "users.txt").write_text(f'"{target.username or "postgres"}" ""\n')
        if os.geteuid() == 0:  # pgbouncer refuses to run as root: it runs as postgres, in this folder
            for path in (self.dir, *(str(child) for child in Path(self.dir).iterdir())):
                shutil.chown(path, "postgres")
        self.process: subprocess.Popen | None = None

    def url(self, database_url: str) -> str:
        """`database_url` (on the machine's PostgreSQL), reached through this PgBouncer instead."""
        parts = urlsplit(database_url)
        return parts._replace(netloc=f"{parts.username or 'postgres'}@127.0.0.1:{self.port}").geturl()

    def start(self) -> PgBouncer:
        user = [] if os.geteuid() else ["-u", "postgres"]
        self.process = subprocess.Popen(
            [self.binary, *user, f"{self.dir}/pgbouncer.ini"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port)
        return self

    def log(self) -> str:
        return Path(self.dir, "pgbouncer.log").read_text(errors="replace")

    def close(self) -> None:
        _end(self.process, self.dir)


class RedisSentinel:
    """One redis-server in sentinel mode on a free port, watching `primary` as service `name`:
    quorum 1, the primary judged down after `down_after_ms` without an answer."""

    def __init__(self, primary: RedisServer, name: str = "aigen", down_after_ms: int = 1000) -> None:
        self.binary = shutil.which("redis-server")
        self.port = free_port()
        self.name = name
        self.dir = tempfile.mkdtemp(prefix="sentinel-test-")
        Path(self.dir, "sentinel.conf").write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\n"
            f"sentinel monitor {name} 127.0.0.1 {primary.port} 1\n"
            f"sentinel down-after-milliseconds {name} {down_after_ms}\n"
            f"sentinel failover-timeout {name} 5000\n"
            f"sentinel parallel-syncs {name} 1\n"
        )
        self.process: subprocess.Popen | None = None
        self.url = f"redis+sentinel://127.0.0.1:{self.port}/{name}"

    def start(self) -> RedisSentinel:
        self.process = subprocess.Popen(
            [self.binary, f"{self.dir}/sentinel.conf", "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        return self

    def primary_port(self) -> int | None:
        """The port the sentinel names as the primary right now."""
        import redis

        with redis.Redis(port=self.port, socket_timeout=1) as client:
            address = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
        return int(address[1]) if address else None

    def close(self) -> None:
        _end(self.process, self.dir)


class RedisClusterNodes:
    """A Redis Cluster of `size` primaries with `replicas` replicas each on free ports, created with
    redis-cli; a node is judged down after `node_timeout_ms` without an answer."""

    def __init__(self, size: int = 3, replicas: int = 0, node_timeout_ms: int = 15_000) -> None:
        if not shutil.which("redis-cli"):
            unavailable("redis-cli is not installed")
        self.replicas = replicas
        # The bus port is named: by default it is the port + 10,000, past 65,535 for a high free port.
        self.nodes = [
            RedisServer(
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-port",
                str(free_port()),
                "--cluster-node-timeout",
                str(node_timeout_ms),
                "--repl-diskless-sync-delay",
                "0",  # a replica syncs at once
            )
            for _ in range(size * (1 + replicas))
        ]
        self.url = "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def start(self) -> RedisClusterNodes:
        import redis

        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            ["redis-cli", "--cluster", "create", *addresses]
            + ["--cluster-replicas", str(self.replicas), "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        deadline = time.monotonic() + 30
        for node in self.nodes:
            with redis.Redis(port=node.port, socket_timeout=1) as client:
                while client.cluster("info")["cluster_state"] != "ok":
                    if time.monotonic() > deadline:
                        raise TimeoutError("the cluster never reached cluster_state:ok")
                    time.sleep(0.1)
        return self

    def role(self, node: RedisServer) -> str:
        """`master` or `slave`, as the node says of itself (and whether its replication link is up)."""
        import redis

        with redis.Redis(port=node.port, socket_timeout=1) as client:
            role = client.execute_command("ROLE")
            if role[0] == b"slave":
                return "slave" if role[3] == b"connected" else "slave-syncing"
            return role[0].decode()

    def replica_of(self, primary: RedisServer) -> RedisServer:
        """The node replicating `primary`."""
        import redis

        for node in self.nodes:
            with redis.Redis(port=node.port, socket_timeout=1) as client:
                role = client.execute_command("ROLE")
            if role[0] == b"slave" and int(role[2]) == primary.port:
                return node
        raise LookupError(f"no replica of the node on port {primary.port}")

    def healthy(self, nodes: list[RedisServer]) -> bool:
        """Every one of `nodes` says the cluster is ok (all slots served)."""
        import redis

        for node in nodes:
            with redis.Redis(port=node.port, socket_timeout=1) as client:
                if client.cluster("info")["cluster_state"] != "ok":
                    return False
        return True

    def key_counts(self) -> list[int]:
        """How many keys each node holds."""
        import redis

        counts = []
        for node in self.nodes:
            with redis.Redis(port=node.port, socket_timeout=1) as client:
                counts.append(client.dbsize())
        return counts

    def close(self) -> None:
        for node in self.nodes:
            node.close()


def _end(process: subprocess.Popen | None, folder: str) -> None:
    """Stop a server the tests started, and remove its folder."""
    if process and process.poll() is None:
        process.terminate()
        process.wait(timeout=10)
    shutil.rmtree(folder, ignore_errors=True)
