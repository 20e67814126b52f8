"""`edge-actors run --init-config FILE`: a device's settings (thing name, certificates, root,
broker, registry) in a configuration file of Greengrass's shape; a device process started
with nothing else joins a fleet deployment; bad files are refused naming the key."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from actors.cli import _parser, _settle_run

from .conftest import write
from .fleet import Fleet
from .servers import REGION
from .test_cli import cli, controller_flags, env


def device_config(fleet: Fleet, thing: str, folder: Path) -> Path:
    cert, key = fleet.pki.thing(thing)
    return write(folder / "config.yaml", f"""\
system:
  thingName: {thing}
  certificateFilePath: {cert}
  privateKeyPath: {key}
  rootCaPath: {fleet.pki.ca}
  rootpath: ./{thing}-root        # relative: from the file's folder
services:
  aws.greengrass.Nucleus:
    componentType: NUCLEUS
    version: 2.13.0               # Greengrass's keys with no use here are accepted
    configuration:
      awsRegion: {REGION}
      iotRoleAlias: GreengrassCoreTokenExchangeRoleAlias
      iotDataEndpoint: 127.0.0.1
      mqtt:
        port: {fleet.broker.port}
      fleet:
        registry: {fleet.url}
        s3Endpoint: {fleet.registry_server.endpoint}
""")


def test_a_device_started_with_only_init_config_takes_a_fleet_deployment(
        fleet: Fleet, tmp_path: Path) -> None:
    anyio.run(fleet.publish, {"test.Runtime": "1.0.0", "test.Model": "1.0.0",
                              "test.App": "1.0.0"})
    folder = tmp_path / "etc"
    config = device_config(fleet, "dev-c", folder)
    environment = env(fleet, device=True)  # read-only S3 credentials, from the AWS chain
    del environment["AWS_ENDPOINT_URL_S3"]  # the endpoint comes from the file
    log = (tmp_path / "dev-c.log").open("w")
    device = subprocess.Popen([sys.executable, "-m", "actors", "run", "--init-config",
                               str(config)], env=environment, stdout=log,
                              stderr=subprocess.STDOUT, text=True)
    try:
        deployed = cli(fleet, "fleet", "deploy", "--target", "thing/dev-c", "--component",
                       "test.App=1.0.0", "--wait", "90", *controller_flags(fleet))
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr + \
            (tmp_path / "dev-c.log").read_text()
        assert "dev-c: SUCCEEDED" in deployed.stdout
        root = folder / "dev-c-root"  # system.rootpath
        assert (root / "work" / "test.App" / "runs.txt").read_text() == "1.0.0 hello\n"
    finally:
        device.send_signal(signal.SIGTERM)
        try:
            device.wait(30)
        except subprocess.TimeoutExpired:
            device.kill()
            device.wait()
        log.close()


def test_the_flags_given_override_the_file(tmp_path: Path) -> None:
    config = write(tmp_path / "config.yaml", """\
system: {thingName: from-file, rootpath: /var/lib/from-file}
services:
  aws.greengrass.Nucleus:
    configuration:
      iotDataEndpoint: broker.example.com
      fleet: {registry: s3://bucket/prefix}
""")
    args = _parser().parse_args(["run", "--init-config", str(config), "--thing", "from-flag",
                                 "--registry", "s3://other/prefix"])
    _settle_run(args)
    assert (args.thing_name, args.root, args.broker, args.registry) == (
        "from-flag", Path("/var/lib/from-file"), "mqtts://broker.example.com:8883",
        "s3://other/prefix")
    args = _parser().parse_args(["run"])
    _settle_run(args)
    assert (args.thing_name, str(args.root), args.broker) == (
        "edge-actors-local", ".edge-actors", None)


NUCLEUS = "services.aws.greengrass.Nucleus"
BAD = [
    ("system:\n  thingName: [a, b]\n", 'system.thingName: [\'a\', \'b\']: expected a string'),
    ("system:\n  certFilePath: /x\n", "system.certFilePath: unknown key; expected thingName, "
     "certificateFilePath, privateKeyPath, rootCaPath, rootpath"),
    ("system:\n  privateKeyPath: missing.key\n",
     'system.privateKeyPath: "missing.key": expected a file that exists'),
    ("services:\n  aws.greengrass.Nucleus:\n    configuration:\n      mqtt: {port: 70000}\n",
     f"{NUCLEUS}.configuration.mqtt.port: 70000: expected a port number, 1 to 65535"),
    ("services:\n  aws.greengrass.Nucleus:\n    configuration:\n"
     "      iotDataEndpoint: http://broker:8883\n      fleet: {registry: s3://b/p}\n",
     f'{NUCLEUS}.configuration.iotDataEndpoint: "http://broker:8883": expected a host name, '
     "or mqtt[s]://HOST:PORT"),
    ("services:\n  aws.greengrass.Nucleus:\n    configuration:\n"
     "      iotDataEndpoint: broker\n      fleet: {registry: bucket/prefix}\n",
     f'{NUCLEUS}.configuration.fleet.registry: "bucket/prefix": expected s3://BUCKET/PREFIX'),
    ("services:\n  aws.greengrass.Nucleus:\n    configuration:\n      iotDataEndpoint: b\n",
     f"{NUCLEUS}.configuration.fleet.registry: missing"),
    ("services:\n  aws.greengrass.Nucleus:\n    configuration:\n      fleet: {regsitry: x}\n",
     f"{NUCLEUS}.configuration.fleet.regsitry: unknown key; expected registry, s3Endpoint"),
    ("services:\n  aws.greengrass.Nucleus:\n    componentType: GENERIC\n",
     f'{NUCLEUS}.componentType: "GENERIC": expected NUCLEUS'),
    ("services:\n  aws.greengrass.Cli:\n    configuration: {}\n",
     "services.aws.greengrass.Cli: only aws.greengrass.Nucleus's configuration is read"),
    ("system: [thingName]\n", "system: ['thingName']: expected a mapping"),
    ("system:\n  thingName: a\n b: c\n", "not valid YAML"),
]


@pytest.mark.parametrize(("text", "message"), BAD, ids=[m[:40] for _, m in BAD])
def test_a_bad_file_is_refused_naming_the_key(tmp_path: Path, text: str,
                                              message: str) -> None:
    config = write(tmp_path / "config.yaml", text)
    done = subprocess.run([sys.executable, "-m", "actors", "run", "--init-config", str(config),
                           "--root", str(tmp_path / "root")], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith(f"edge-actors: {config}: "), done.stderr
    assert message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "root").exists()  # nothing started
