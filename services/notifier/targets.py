"""Where a webhook may go: the address check, and the one lookup it relies on.

A tenant names the URL, but the notifier makes the connection, from inside the
suite's network: without a check, a webhook reaches what only the suite should
(cloud metadata at 169.254.169.254, storage on localhost:50052, a database on
10.x). So a target is refused when it is, or resolves to, a loopback, private,
link-local, multicast, unspecified or otherwise non-public address, unless
AUTOML_WEBHOOK_ALLOW_NETWORKS admits it; the suite's own services are refused
even then.

The host is resolved once per delivery, every address it resolves to is
checked, and the delivery connects to the checked address itself (the URL's
host name still goes in the Host header and in TLS's SNI and certificate
check): a DNS answer that changes between check and connection (DNS
rebinding) cannot slip a private address in.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from automl.common.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# host -> the addresses it resolves to (strings, as getaddrinfo gives them)
Resolver = Callable[[str], Awaitable[list[str]]]

DNS_TIMEOUT_SECONDS = 5.0
DEFAULT_PORTS = {"http": 80, "https": 443}
_HOSTNAME = re.compile(r"^(?=.{1,254}$)([A-Za-z0-9_-]{1,63}\.)*[A-Za-z0-9_-]{1,63}\.?$")
# IPv6 prefixes that carry an IPv4 address which is what the packets reach.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class BadURL(ValueError):
    """The URL cannot be a webhook target at all; the message says why."""


class TargetRefused(Exception):
    """The target is an address webhooks may not reach; the message names the
    host as given and the kind of address (never the address it resolved to)."""

    def __init__(self, message: str, *, own: bool = False) -> None:
        super().__init__(message)
        self.own = own  # one of the suite's own services: no allow-list admits it


class LookupFailed(Exception):
    """The host did not resolve; `temporary` when trying again may help."""

    def __init__(self, message: str, *, temporary: bool) -> None:
        super().__init__(message)
        self.temporary = temporary


@dataclass(frozen=True)
class Target:
    """A webhook URL with the checked address to connect to."""

    url: httpx.URL  # as the tenant gave it
    host: str  # its host, ASCII (IDNA) or an IP literal: for SNI and the certificate check
    address: IPAddress  # checked: the connection goes here and nowhere else

    @property
    def pinned_url(self) -> httpx.URL:
        """The URL with the checked address for host, so no second lookup happens."""
        return self.url.copy_with(host=str(self.address))

    @property
    def host_header(self) -> str:
        return self.url.netloc.decode("ascii")  # host[:port], without user info, as httpx would send it


def parse(url: str) -> tuple[httpx.URL, str, int]:
    """The URL as httpx reads it (the very parser that sends it), its ASCII
    host and its port; BadURL if it cannot be a webhook target."""
    try:
        parsed = httpx.URL(url)
        port = DEFAULT_PORTS.get(parsed.scheme, 0) if parsed.port is None else parsed.port
    except (httpx.InvalidURL, ValueError):
        raise BadURL(f"{url!r} is not a valid URL") from None
    if parsed.scheme not in DEFAULT_PORTS or not parsed.raw_host:
        raise BadURL(f"{url!r}: use an http:// or https:// URL with a host")
    # The check and the connection read the URL with the same parser (httpx's):
    # no parser differential can show the check one host and connect to another.
    host = parsed.raw_host.decode("ascii")
    if not _is_ip(host) and not _HOSTNAME.match(host):
        raise BadURL(f"{url!r}: {host!r} is not a host name")
    if not 1 <= port <= 65535:
        raise BadURL(f"{url!r}: the port must be between 1 and 65535")
    return parsed, host, port


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def judged(address: IPAddress) -> IPAddress:
    """The address whose kind decides: the IPv4 address an IPv6 one carries
    (IPv4-mapped ::ffff:a.b.c.d, NAT64 64:ff9b::/96, 6to4 2002::/16), since
    packets to it end up there, or the address itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address.sixtofour is not None:
            return address.sixtofour
    return address


def kind(address: IPAddress) -> str | None:
    """Why `address` is not a public one ("loopback", "private", ...), or None if it is."""
    address = judged(address)
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:  # ipaddress counts most multicast as global
        return "multicast"
    if address.is_reserved:  # 240/4, and IPv6 outside the unicast ranges
        return "reserved"
    if address.is_private or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local):
        return "private"
    if not address.is_global:  # 100.64/10 (carrier-grade NAT), ...
        return "reserved"
    return None


def is_local_address(address: IPAddress) -> bool:
    """Whether `address` is one of this machine's own: binding a socket to it
    works only then. Sends nothing."""
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:  # fails too where IPv6 is off
            sock.bind((str(address), 0))
    except OSError:
        return False
    return True


async def system_resolve(host: str) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _host_port(address: str) -> tuple[str, int] | None:
    """host and port of "host:port", "[v6]:port" or "scheme://host:port"; None without a port."""
    parsed = urlsplit(address if "//" in address else f"//{address}")
    try:
        port = parsed.port
    except ValueError:
        return None
    return (parsed.hostname or "", port) if port else None


@dataclass
class Guard:
    """The address check, with what it needs from the settings."""

    allow: tuple[IPNetwork, ...] = ()
    own_ports: frozenset[int] = frozenset()  # ports of the suite's services
    own_hosts: tuple[str, ...] = ()  # where they run, besides this machine
    resolve: Resolver = system_resolve
    is_local: Callable[[IPAddress], bool] = is_local_address
    dns_timeout: float = DNS_TIMEOUT_SECONDS

    @classmethod
    def from_settings(cls, settings: Settings, resolve: Resolver = system_resolve) -> Guard:
        ports = {
            settings.gateway_port,
            settings.storage_port,
            settings.runner_port,
            settings.notifier_port,
            settings.http_port,
        }
        hosts = [settings.host]
        for address in (
            settings.storage_address,
            settings.runner_address,
            settings.notifier_address,
            settings.s3_endpoint,
            settings.dask_scheduler,
        ):
            if found := _host_port(address):
                hosts.append(found[0])
                ports.add(found[1])
        return cls(
            allow=settings.webhook_networks,
            own_ports=frozenset(p for p in ports if p),
            own_hosts=tuple(dict.fromkeys(h for h in hosts if h)),
            resolve=resolve,
        )

    def allowed(self, address: IPAddress) -> bool:
        candidates = {address, judged(address)}
        return any(a.version == n.version and a in n for a in candidates for n in self.allow)

    def refusal(self, address: IPAddress, port: int, own: Collection[IPAddress] = ()) -> TargetRefused | None:
        """Why `address:port` may not be a webhook target, or None. `own`: the
        addresses the suite's other hosts resolve to."""
        inner = judged(address)
        if port in self.own_ports and (
            inner.is_loopback or inner.is_unspecified or inner in own or address in own or self.is_local(inner)
        ):
            return TargetRefused("one of this suite's own services", own=True)
        if self.allowed(address):
            return None
        if (why := kind(address)) is not None:
            return TargetRefused(f"a {why} address")
        return None

    async def lookup(self, host: str) -> list[IPAddress]:
        """Every address `host` resolves to (itself if it is an IP literal)."""
        try:
            return [ipaddress.ip_address(host)]
        except ValueError:
            pass
        try:
            async with asyncio.timeout(self.dns_timeout):
                found = await self.resolve(host)
        except TimeoutError:
            raise LookupFailed(f"{host}: no answer from DNS in {self.dns_timeout:g} s", temporary=True) from None
        except socket.gaierror as exc:
            raise LookupFailed(f"{host}: {exc.strerror}", temporary=exc.errno == socket.EAI_AGAIN) from None
        except OSError as exc:
            raise LookupFailed(f"{host}: {exc}", temporary=True) from None
        addresses = []
        for text in found:
            try:
                addresses.append(ipaddress.ip_address(text))
            except ValueError:
                continue
        if not addresses:
            raise LookupFailed(f"{host}: no address", temporary=False)
        return addresses

    async def _own_addresses(self) -> set[IPAddress]:
        """What the suite's hosts resolve to now (a host that does not is skipped)."""
        own: set[IPAddress] = set()
        for host in self.own_hosts:
            try:
                own.update(await self.lookup(host))
            except LookupFailed:
                continue
        return own

    async def check(self, url: str) -> Target:
        """Resolve `url`'s host once, check every address it resolves to, and
        return the first to connect to. BadURL, LookupFailed or TargetRefused."""
        parsed, host, port = parse(url)
        addresses = await self.lookup(host)
        own = await self._own_addresses() if port in self.own_ports else set()
        said = "is" if _is_ip(host) else "resolves to"
        for address in addresses:  # all of them: a client may try any, and so may a later attempt
            if (refused := self.refusal(address, port, own)) is not None:
                where = host if port == DEFAULT_PORTS[parsed.scheme] else f"{host}:{port}"
                raise TargetRefused(f"{where} {said} {refused}", own=refused.own)
        first = addresses[0]
        # An IPv4-mapped address is its IPv4 address: connect to that.
        mapped = first.ipv4_mapped if isinstance(first, ipaddress.IPv6Address) else None
        return Target(parsed, host, mapped or first)
