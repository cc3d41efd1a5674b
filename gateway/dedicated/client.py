"""NetMind's control plane for dedicated endpoints as typed calls: flavors, and services to create, read, resize, delete.

Documented (docs/providers.md): the paths, the request fields, `service_id` and `status`
in answers, and each flavor's `billing.usd_price_unit` (USD per GPU-hour). Not documented,
so read leniently: whether an answer comes wrapped in `{"data": ...}`, how the flavor list
is wrapped, and which other fields a service answer carries (its flavor, instance count
and GPUs per instance are read when present, from the same places a create request names them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from gateway.config import ServiceSpec
from gateway.money import usd_to_nano

INITIALIZING, AVAILABLE, STOPPED, UNAVAILABLE = "initializing", "available", "stopped", "unavailable"
UNKNOWN = "unknown"  # not yet polled, or the control plane did not say
STATUSES = (INITIALIZING, AVAILABLE, STOPPED, UNAVAILABLE)
FLAVOR_PATH = "/v1/inference-service/flavor"
SERVICE_PATH = "/v1/inference-service"
# Why a call failed: the `reason` of a ControlPlaneError, and a metric label.
REASONS = ("unreachable", "timeout", "auth", "not_found", "rejected", "rate_limited", "server_error", "bad_response")


class ControlPlaneError(Exception):
    """A control-plane call that failed; the message says which call, and what would fix it when known."""

    def __init__(self, reason: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status


@dataclass(frozen=True, slots=True)
class Flavor:
    """A GPU type NetMind rents, and its price."""

    flavor_id: str
    display_name: str
    available_num: int | None
    node_max_gpu: int | None
    gpu_hour_nano: int | None  # billing.usd_price_unit in nano-dollars, per GPU-hour


@dataclass(frozen=True, slots=True)
class Service:
    """A dedicated service as the control plane last described it."""

    service_id: str
    status: str
    name: str = ""
    flavor_id: str | None = None
    instances: int | None = None  # resource_metadata.target_instance_number
    gpu_num: int | None = None  # deploy_metadata.gpu_num

    @property
    def available(self) -> bool:
        return self.status == AVAILABLE


def create_body(spec: ServiceSpec) -> dict[str, Any]:
    """The documented POST body for a service of `spec`."""
    return {
        "name": spec.name,
        "description": spec.description,
        "payment_type": "usd",
        "resource_metadata": {"flavor_id": spec.flavor_id, "scale_type": "manual",
                              "target_instance_number": spec.instances},
        "deploy_metadata": {"image_url": spec.image_url, "command": spec.command, "port": spec.port,
                            "gpu_num": spec.gpu_num},
    }


class ControlPlane:
    """One HTTP client per caller; close it (or use `async with`) when done."""

    def __init__(self, base_url: str, token: str, timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._timeout_s = timeout_s
        self._client = httpx.AsyncClient(base_url=self.base_url, timeout=timeout_s,
                                         headers={"authorization": f"Bearer {token}", "accept": "application/json"})

    async def __aenter__(self) -> ControlPlane:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._client.aclose()

    async def flavors(self) -> list[Flavor]:
        doc = await self._call("GET", FLAVOR_PATH)
        if isinstance(doc, dict):
            doc = next((doc[k] for k in ("flavors", "items", "list") if isinstance(doc.get(k), list)), doc)
        if not isinstance(doc, list):
            raise self._bad("GET", FLAVOR_PATH, "expected a list of flavors")
        return [self._flavor(item) for item in doc]

    async def create(self, spec: ServiceSpec) -> Service:
        doc = await self._call("POST", SERVICE_PATH, create_body(spec))
        service = _service(doc, None)
        if service is None:
            raise self._bad("POST", SERVICE_PATH, "the answer names no service_id")
        return service

    async def get(self, service_id: str) -> Service:
        path = f"{SERVICE_PATH}/{service_id}"
        service = _service(await self._call("GET", path), service_id)
        if service is None:
            raise self._bad("GET", path, "the answer is not a service")
        return service

    async def update(self, service_id: str, changes: dict[str, Any]) -> Service | None:
        """PUT `changes`; the service as the answer describes it, or None when it says nothing of it."""
        return _service(await self._call("PUT", f"{SERVICE_PATH}/{service_id}", changes), service_id)

    async def scale(self, service_id: str, instances: int) -> Service | None:
        """Set target_instance_number (0 stops every worker)."""
        return await self.update(service_id, {"resource_metadata": {"target_instance_number": instances}})

    async def delete(self, service_id: str) -> None:
        await self._call("DELETE", f"{SERVICE_PATH}/{service_id}")

    # --- one call, every way it can fail ---------------------------------------------------

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        what = f"{method} {self.base_url}{path}"
        if not self._token:
            raise ControlPlaneError("auth", f"{what}: no control token configured (control_token, or api_key)")
        try:
            response = await self._client.request(method, path, content=None if body is None else orjson.dumps(body),
                                                  headers=None if body is None else {"content-type": "application/json"})
        except httpx.TimeoutException:
            raise ControlPlaneError("timeout", f"{what}: no answer within {self._timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise ControlPlaneError("unreachable", f"{what}: cannot reach the control plane "
                                    f"({type(exc).__name__}: {exc})") from None
        if response.status_code >= 400:
            raise _refusal(what, response)
        if not response.content.strip():
            return None
        try:
            doc = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise ControlPlaneError("bad_response", f"{what}: the answer is not JSON: "
                                    f"{response.text[:200]!r}", response.status_code) from None
        if isinstance(doc, dict) and doc.get("code") not in (None, 0, 200, "0", "200") and doc.get("data") is None:
            # A refusal inside a 200 answer, as some APIs send them.
            raise ControlPlaneError("rejected", f"{what}: refused (code {doc['code']}): {_message(doc)}",
                                    response.status_code)
        return doc.get("data") if isinstance(doc, dict) and isinstance(doc.get("data"), (dict, list)) else doc

    def _flavor(self, item: Any) -> Flavor:
        if not isinstance(item, dict) or not item.get("flavor_id"):
            raise self._bad("GET", FLAVOR_PATH, f"a flavor without flavor_id: {str(item)[:200]}")
        billing = item.get("billing") if isinstance(item.get("billing"), dict) else {}
        price = billing.get("usd_price_unit")
        try:
            gpu_hour = None if price is None else usd_to_nano(price)
        except ArithmeticError:
            raise self._bad("GET", FLAVOR_PATH, f"flavor {item['flavor_id']}: usd_price_unit {price!r} "
                            "is not a number") from None
        return Flavor(flavor_id=str(item["flavor_id"]), display_name=str(item.get("display_name") or ""),
                      available_num=_opt_int(item.get("available_num")),
                      node_max_gpu=_opt_int(item.get("node_max_gpu")), gpu_hour_nano=gpu_hour)

    def _bad(self, method: str, path: str, problem: str) -> ControlPlaneError:
        return ControlPlaneError("bad_response", f"{method} {self.base_url}{path}: {problem}")


def _refusal(what: str, response: httpx.Response) -> ControlPlaneError:
    status = response.status_code
    try:
        detail = _message(orjson.loads(response.content))
    except orjson.JSONDecodeError:
        detail = response.text[:200].strip()
    if status in (401, 403):
        return ControlPlaneError("auth", f"{what}: {status}, the control token was refused: {detail}", status)
    if status == 404:
        return ControlPlaneError("not_found", f"{what}: 404, no such service or path: {detail}", status)
    if status == 429:
        return ControlPlaneError("rate_limited", f"{what}: 429, too many calls: {detail}", status)
    if status >= 500:
        return ControlPlaneError("server_error", f"{what}: {status}, the control plane failed: {detail}", status)
    return ControlPlaneError("rejected", f"{what}: {status}, refused: {detail}", status)


def _message(doc: Any) -> str:
    if isinstance(doc, dict):
        for key in ("message", "msg", "detail", "error"):
            value = doc.get(key)
            if isinstance(value, dict):
                value = value.get("message")
            if value:
                return str(value)
    return str(doc)[:200]


def _service(doc: Any, service_id: str | None) -> Service | None:
    """The service an answer describes, or None when it describes none (a bare `{"message": "ok"}`)."""
    if not isinstance(doc, dict) or not (doc.get("service_id") or service_id):
        return None
    if "service_id" not in doc and "status" not in doc:
        return None
    resource = doc.get("resource_metadata") if isinstance(doc.get("resource_metadata"), dict) else {}
    deploy = doc.get("deploy_metadata") if isinstance(doc.get("deploy_metadata"), dict) else {}
    return Service(
        service_id=str(doc.get("service_id") or service_id),
        status=str(doc.get("status") or UNKNOWN),
        name=str(doc.get("name") or ""),
        flavor_id=None if resource.get("flavor_id") is None else str(resource["flavor_id"]),
        instances=_opt_int(resource.get("target_instance_number", doc.get("target_instance_number"))),
        gpu_num=_opt_int(deploy.get("gpu_num")),
    )


def _opt_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None
