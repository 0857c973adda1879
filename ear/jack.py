"""A private JACK server on the dummy backend: real audio through PortAudio on a machine with no sound card.

`onbeat bench live --jack` and the capture tests use it. Each server gets a unique name; the processes started
through `spawn` (jack_metro, capture processes) reach it through JACK_DEFAULT_SERVER in `env`, and each runs in
its own process group so that `stop` can end it with everything it started.
"""
import os
import shutil
import signal
import subprocess
import time
import uuid

from onbeat.core.errors import OnbeatError

TOOLS = ("jackd", "jack_lsp", "jack_connect", "jack_metro")


class JackServer:
    def __init__(self, prefix="onbeat", sample_rate=48000, period=256, synchronous=False):
        missing = [tool for tool in TOOLS if not shutil.which(tool)]
        if missing:
            raise OnbeatError(f"JACK tools not installed ({', '.join(missing)}): apt-get install jackd2 jack-tools")
        self.name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.sample_rate, self.period = sample_rate, period
        self.synchronous = synchronous  # every client finishes each cycle: a loaded machine delays, never drops
        self.env = {**os.environ, "JACK_DEFAULT_SERVER": self.name, "JACK_NO_AUDIO_RESERVATION": "1"}
        self.clients = []
        self.start()

    def start(self):
        """Start (or, after `kill(self.jackd)`, restart) the server under its name; wait until it answers."""
        self.jackd = self.spawn(["jackd", *(["-S"] if self.synchronous else []), "-n", self.name, "--no-realtime",
                                 "-d", "dummy", "-r", str(self.sample_rate), "-p", str(self.period)])
        deadline = time.monotonic() + 10
        while subprocess.run(["jack_lsp", "-s", self.name], env=self.env, capture_output=True).returncode:
            if time.monotonic() > deadline or self.jackd.poll() is not None:
                self.stop()
                raise OnbeatError(f"JACK server {self.name} did not start (dummy backend)")
            time.sleep(0.1)

    def spawn(self, command, **popen):
        """Start a process in its own process group, talking to this server."""
        popen.setdefault("stdout", subprocess.DEVNULL)
        popen.setdefault("stderr", subprocess.DEVNULL)
        process = subprocess.Popen(command, env=self.env, start_new_session=True, **popen)
        self.clients.append(process)
        return process

    def ports(self):
        listing = subprocess.run(["jack_lsp", "-s", self.name], env=self.env, capture_output=True, text=True)
        return [port for port in listing.stdout.splitlines() if port]

    def wait_for_port(self, predicate, timeout=10.0):
        """The first port name for which `predicate` holds, waiting for it to appear."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [port for port in self.ports() if predicate(port)]
            if found:
                return found[0]
            time.sleep(0.05)
        raise OnbeatError(f"JACK server {self.name}: no matching port appeared; ports: {self.ports()}")

    def connect(self, source, destination):
        subprocess.run(["jack_connect", "-s", self.name, source, destination], env=self.env, check=True)

    def kill(self, process, timeout=3.0):
        """Stop one process group: SIGTERM, then SIGKILL if it lingers."""
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def stop(self):
        for process in reversed(self.clients):
            # jackd gets time to unregister: a killed server keeps one of JACK's 8 server slots on the machine
            # (uniquely named servers never reclaim them) until no server can start at all
            self.kill(process, timeout=20.0 if process is self.jackd else 3.0)
