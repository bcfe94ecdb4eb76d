"""Middleboxes between clients and this host, and their idle timeouts.

Two kinds forget an idle connection in different ways:

- "flow": an L4 device that tracks flows (NAT, firewall, L4 load balancer).
  When a flow is idle longer than its timeout it drops the state silently;
  both ends keep an ESTABLISHED socket that can no longer carry a packet.
  Anything that keeps the flow alive (TCP keepalive, the application's own
  idle close) must act *before* this timeout.
- "proxy": an L7 load balancer that holds its own pooled TCP connections to
  the backend. It closes a pooled connection after its idle timeout; the
  backend's idle timeout must be *longer*, or the backend closes first while
  the proxy sends the next request on the dying connection (HTTP 502).

Presets, with the documented defaults:

| name     | kind  | idle s | documented at |
|----------|-------|--------|---------------|
| aws-nlb  | flow  | 350    | docs.aws.amazon.com/elasticloadbalancing/latest/network/update-idle-timeout.html ("The default idle timeout value for TCP flows is 350 seconds") |
| aws-alb  | proxy | 60     | docs.aws.amazon.com/elasticloadbalancing/latest/application/edit-load-balancer-attributes.html ("By default, ELB sets the idle timeout value for your load balancer to 60 seconds"; configure the application's idle timeout larger) |
| gcp-lb   | proxy | 600    | cloud.google.com/load-balancing/docs/https (backend keepalive timeout fixed at 600 s; backends must keep idle connections longer than 600 s) |
| azure-lb | flow  | 240    | learn.microsoft.com/azure/load-balancer/load-balancer-tcp-idle-timeout ("The default setting is 4 minutes"; idle flows are dropped silently unless TCP reset is enabled) |
"""

from __future__ import annotations

from halfopen.records import record

from ..errors import UsageError

FLOW = "flow"
PROXY = "proxy"
KINDS = (FLOW, PROXY)
MAX_S = 10 * 365 * 86400  # an idle timeout past ten years is a typo


@record(frozen=True)
class Middlebox:
    name: str
    idle_timeout_s: int
    kind: str = FLOW  # FLOW or PROXY
    source: str = ""  # where the number comes from


PRESETS: dict[str, Middlebox] = {
    "aws-nlb": Middlebox("aws-nlb", 350, FLOW,
                         "AWS NLB default TCP idle timeout (docs.aws.amazon.com, update-idle-timeout)"),
    "aws-alb": Middlebox("aws-alb", 60, PROXY,
                         "AWS ALB default connection idle timeout (docs.aws.amazon.com, "
                         "edit-load-balancer-attributes)"),
    "gcp-lb": Middlebox("gcp-lb", 600, PROXY,
                        "GCP external Application LB backend keepalive timeout, fixed "
                        "(cloud.google.com/load-balancing/docs/https)"),
    "azure-lb": Middlebox("azure-lb", 240, FLOW,
                          "Azure Load Balancer default idle timeout, 4 minutes "
                          "(learn.microsoft.com, load-balancer-tcp-idle-timeout)"),
}


WANT = (f"want PRESET ({', '.join(PRESETS)}), SECONDS (1 to {MAX_S}) or "
        "NAME SECONDS [flow|proxy]")


def _bad(word: str) -> UsageError:
    return UsageError(f"bad --middlebox {word!r}: use a preset ({', '.join(PRESETS)}) "
                      "or a number of seconds")


def _seconds(word: str) -> bool:
    """ASCII digits, 1 s to ten years ('²'.isdigit() is True, int('²') fails)."""
    return word.isascii() and word.isdigit() and len(word) <= 9 and 0 < int(word) <= MAX_S


def parse(word: str) -> Middlebox:
    """A --middlebox value: a preset name or a number of seconds (a flow timeout).

    >>> parse("aws-nlb").idle_timeout_s, parse("300").kind
    (350, 'flow')
    """
    word = word.strip()
    if word in PRESETS:
        return PRESETS[word]
    if _seconds(word):
        return Middlebox(f"{word}s", int(word), FLOW, "--middlebox")
    raise _bad(word)


def parse_file(text: str, path: str) -> list[Middlebox]:
    """A middlebox file: one per line, `#` comments.

    Each line is `PRESET`, `SECONDS`, or `NAME SECONDS [flow|proxy]`:

        aws-nlb
        corp-firewall 1800 flow
        haproxy 30 proxy
    """
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        where = f"{path}:{number}"
        # an error names the line, never its text: a secret file given here by
        # mistake (/etc/shadow) must not be printed as root
        if len(words) == 1:
            try:
                found.append(parse(words[0]))
            except UsageError:
                raise UsageError(f"bad middlebox at {where}: not a preset or a number of "
                                 f"seconds; {WANT}") from None
            continue
        if len(words) > 3 or not _seconds(words[1]) \
                or (len(words) == 3 and words[2] not in KINDS):
            raise UsageError(f"bad middlebox at {where}: {WANT}")
        kind = words[2] if len(words) == 3 else FLOW
        found.append(Middlebox(words[0], int(words[1]), kind, where))
    return found
