"""The runtime's configuration file: ``edge-actors run --init-config FILE``.

Greengrass's nucleus takes its first configuration from a YAML file given with
``--init-config``; this reads the same shape, the part of it that sets what
``run``'s flags set (the flag each key stands for on the right)::

    system:
      thingName: dev-a                                  # --thing
      certificateFilePath: /greengrass/v2/device.pem.crt  # --mqtt-cert
      privateKeyPath: /greengrass/v2/private.pem.key      # --mqtt-key
      rootCaPath: /greengrass/v2/AmazonRootCA1.pem        # --mqtt-ca
      rootpath: /greengrass/v2                          # --root
    services:
      aws.greengrass.Nucleus:
        componentType: NUCLEUS
        configuration:
          iotDataEndpoint: broker.example.com           # --broker mqtts://HOST:PORT
          mqtt:
            port: 8883                                  #   (its port; default 8883)
          awsRegion: us-east-1                          # the registry's S3 region
          runWithDefault:
            posixUser: ggc_user:ggc_group               # --component-default-user
          platformOverride: {architecture: arm}         # --platform-override
          fleet:                                        # edge-actors' own keys
            registry: s3://BUCKET/PREFIX                # --registry
            s3Endpoint: http://127.0.0.1:8333           # --s3-endpoint

``iotDataEndpoint`` is a host name, as in Greengrass (TLS, port ``mqtt.port``),
or an ``mqtt://HOST:PORT`` / ``mqtts://HOST:PORT`` URL. Relative paths are
taken from the file's folder. Keys Greengrass's nucleus reads that have no use
here (``iotCredEndpoint``, ``iotRoleAlias``, ``logging`` ...) are accepted and
not used; any other key, and any value of the wrong type, is refused with the
file, the key's path and what is expected, before anything starts. The
S3 credentials come from the usual AWS chain (environment, profile), as with
the flags.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import ActorsError

NUCLEUS = "aws.greengrass.Nucleus"

#: What a Greengrass configuration may hold that this runtime does not use.
UNUSED_NUCLEUS = ("version", "dependencies", "lifecycle")
UNUSED_CONFIGURATION = (
    "iotCredEndpoint", "iotRoleAlias", "greengrassDataPlaneEndpoint",
    "greengrassDataPlanePort", "networkProxy", "logging", "telemetry", "fleetStatus",
    "componentStoreMaxSizeBytes", "deploymentPollingFrequencySeconds", "jvmOptions",
    "envStage", "interpolateComponentConfiguration", "fipsMode", "s3EndpointType")
UNUSED_MQTT = ("keepAliveTimeoutMs", "pingTimeoutMs", "operationTimeoutMs",
               "maxInFlightPublishes", "maxMessageSizeInBytes", "maxPublishRetry", "spooler",
               "version")


class InitConfigError(ActorsError, ValueError):
    """The configuration file is not one the runtime can take (names the file and key)."""


@dataclass
class InitConfig:
    """What the file sets, by the ``run`` flag's destination (``root``, ``thing_name``,
    ``mqtt_cert`` ...); keys the file leaves out are not there."""

    path: Path
    values: dict[str, Any] = field(default_factory=dict)


def load(path: Path) -> InitConfig:
    """Read and check ``path``; :class:`InitConfigError` on the first thing wrong."""
    import yaml

    try:
        text = path.read_text()
    except OSError as exc:
        raise InitConfigError(f"--init-config {path}: cannot read it: "
                              f"{exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InitConfigError(f"{path}: not valid YAML: {exc}") from None
    return _Reader(path).read(data)


class _Reader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.out = InitConfig(path)

    def fail(self, where: str, value: Any, expected: str) -> InitConfigError:
        return InitConfigError(f"{self.path}: {where}: {_shown(value)}: expected {expected}")

    def mapping(self, value: Any, where: str, read: tuple[str, ...],
                unused: tuple[str, ...] = ()) -> Mapping[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(where, value, "a mapping")
        for key in value:
            if key not in read and key not in unused:
                known = ", ".join(read)
                raise InitConfigError(f"{self.path}: {where}.{key}: unknown key; expected "
                                      f"{known}" + (" (or a key Greengrass's nucleus reads "
                                                    "that is not used here: "
                                                    f"{', '.join(unused)})" if unused else ""))
        return value

    def string(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(where, value, "a string")
        return value.strip()

    def file(self, value: Any, where: str) -> Path:
        path = self.folder_path(value, where)
        if not path.is_file():
            raise self.fail(where, value, f"a file that exists ({path} does not)")
        return path

    def folder_path(self, value: Any, where: str) -> Path:
        path = Path(self.string(value, where)).expanduser()
        return path if path.is_absolute() else (self.path.parent / path).absolute()

    def read(self, data: Any) -> InitConfig:
        if data is None:
            raise InitConfigError(f"{self.path}: the file is empty; expected system: and "
                                  f"services: {NUCLEUS}: configuration:")
        top = self.mapping(data, "(top)", ("system", "services"))
        self.system(self.mapping(top.get("system"), "system",
                                 ("thingName", "certificateFilePath", "privateKeyPath",
                                  "rootCaPath", "rootpath")))
        services = top.get("services")
        if services is not None and not isinstance(services, dict):
            raise self.fail("services", services, f"a mapping with {NUCLEUS}")
        for name, service in (services or {}).items():
            if name != NUCLEUS:
                raise InitConfigError(
                    f"{self.path}: services.{name}: only {NUCLEUS}'s configuration is read "
                    "from this file; components come with a deployment")
            self.nucleus(service)
        return self.out

    def system(self, system: Mapping[str, Any]) -> None:
        values = self.out.values
        if "thingName" in system:
            values["thing_name"] = self.string(system["thingName"], "system.thingName")
        for key, dest in (("certificateFilePath", "mqtt_cert"), ("privateKeyPath", "mqtt_key"),
                          ("rootCaPath", "mqtt_ca")):
            if key in system:
                values[dest] = self.file(system[key], f"system.{key}")
        if "rootpath" in system:
            values["root"] = self.folder_path(system["rootpath"], "system.rootpath")

    def nucleus(self, service: Any) -> None:
        where = f"services.{NUCLEUS}"
        service = self.mapping(service, where, ("componentType", "configuration"),
                               UNUSED_NUCLEUS)
        kind = service.get("componentType", "NUCLEUS")
        if kind != "NUCLEUS":
            raise self.fail(f"{where}.componentType", kind, "NUCLEUS")
        where += ".configuration"
        configuration = self.mapping(
            service.get("configuration"), where,
            ("iotDataEndpoint", "mqtt", "awsRegion", "runWithDefault", "platformOverride",
             "fleet"), UNUSED_CONFIGURATION)
        values = self.out.values
        mqtt = self.mapping(configuration.get("mqtt"), f"{where}.mqtt", ("port",), UNUSED_MQTT)
        port = mqtt.get("port")
        if port is not None and (isinstance(port, bool) or not isinstance(port, int)
                                 or not 0 < port < 65536):
            raise self.fail(f"{where}.mqtt.port", port, "a port number, 1 to 65535")
        if "iotDataEndpoint" in configuration:
            values["broker"] = self.broker(configuration["iotDataEndpoint"], port,
                                           f"{where}.iotDataEndpoint")
        elif port is not None:
            raise InitConfigError(f"{self.path}: {where}.mqtt.port: given without "
                                  f"{where}.iotDataEndpoint (the broker's host)")
        if "awsRegion" in configuration:
            values["s3_region"] = self.string(configuration["awsRegion"], f"{where}.awsRegion")
        run_with = self.mapping(configuration.get("runWithDefault"), f"{where}.runWithDefault",
                                ("posixUser",), ("posixShell", "windowsUser"))
        if "posixUser" in run_with:
            values["component_default_user"] = self.string(
                run_with["posixUser"], f"{where}.runWithDefault.posixUser")
        if "platformOverride" in configuration:
            override = configuration["platformOverride"]
            if not isinstance(override, dict) or not all(
                    isinstance(v, str) for v in override.values()):
                raise self.fail(f"{where}.platformOverride", override,
                                "a mapping of platform keys to strings, e.g. "
                                "{architecture: arm}")
            import json

            values["platform_override"] = json.dumps(override)
        fleet = self.mapping(configuration.get("fleet"), f"{where}.fleet",
                             ("registry", "s3Endpoint"))
        if "registry" in fleet:
            registry = self.string(fleet["registry"], f"{where}.fleet.registry")
            bucket = registry.removeprefix("s3://").partition("/")[0]
            if not registry.startswith("s3://") or not bucket:
                raise self.fail(f"{where}.fleet.registry", registry, "s3://BUCKET/PREFIX")
            values["registry"] = registry
        if "s3Endpoint" in fleet:
            endpoint = self.string(fleet["s3Endpoint"], f"{where}.fleet.s3Endpoint")
            parts = urlsplit(endpoint)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise self.fail(f"{where}.fleet.s3Endpoint", endpoint,
                                "an http:// or https:// URL")
            values["s3_endpoint"] = endpoint

    def broker(self, value: Any, port: Any, where: str) -> str:
        text = self.string(value, where)
        if "://" not in text:
            if "/" in text or ":" in text:
                raise self.fail(where, value, "a host name, or mqtt[s]://HOST:PORT")
            return f"mqtts://{text}:{port or 8883}"
        parts = urlsplit(text)
        try:
            url_port = parts.port
        except ValueError:
            raise self.fail(where, value, "a host name, or mqtt[s]://HOST:PORT") from None
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname \
                or parts.path not in ("", "/"):
            raise self.fail(where, value, "a host name, or mqtt[s]://HOST:PORT")
        if port is not None and url_port is not None and port != url_port:
            raise InitConfigError(f"{self.path}: {where}: {text!r} says port {url_port}, "
                                  f"mqtt.port says {port}: give it in one place")
        if url_port is None:
            return f"{parts.scheme}://{parts.hostname}:" \
                f"{port or (8883 if parts.scheme == 'mqtts' else 1883)}"
        return text


def _shown(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else f'"{value}"'
    return text if len(text) <= 80 else text[:77] + "..."
