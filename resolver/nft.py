"""libnftables through its JSON API (libnftables-json(5)), in-process: no ``nft`` spawned.

:class:`Nft` holds one libnftables context (Debian package ``libnftables1``) loaded with
ctypes. :meth:`Nft.run` hands it one ``{"nftables": [...]}`` command list, which libnftables
sends as one netlink batch: the kernel commits every command of it or none (nf_tables
transactions). A context is not thread-safe: one thread at a time uses it. Used by
resolver.frontend.pinning for ``services[].pin``, and by the start-up checks for the tables and
sets a configuration names.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
from typing import Any

import orjson

from resolver.errors import ResolverError

__all__ = ["FAMILIES", "LIBRARY", "PACKAGE", "Nft", "NftError", "split_table"]

#: The shared library's name, and the Debian package that has it.
LIBRARY = "libnftables.so.1"
PACKAGE = "libnftables1"

_OUTPUT_JSON = 1 << 4      # NFT_CTX_OUTPUT_JSON (libnftables.h): JSON out, and JSON in (1.0.6)
_OUTPUT_TERSE = 1 << 11    # NFT_CTX_OUTPUT_TERSE: sets listed without their elements
_INPUT_JSON = 1 << 1       # NFT_CTX_INPUT_JSON (libnftables 1.0.7 and later)

#: What libnftables puts before its messages for JSON input.
_ERROR_PREFIX = re.compile(r"^\S*:\d+:\d+-\d+: (Error: )?")

#: The table :meth:`Nft.updates_timeouts` makes and deletes (with the process id: workers
#: probe at once).
_PROBE_TABLE = "dnssec_sidecar_probe_{pid}"

#: Address families of nftables tables, and which sets of addresses a table of each may hold.
FAMILIES = ("ip", "ip6", "inet", "bridge", "netdev", "arp")


class NftError(ResolverError):
    """libnftables is missing, or refused a command list; the text is its error message."""


def split_table(text: str) -> tuple[str, str]:
    """``"inet sandbox"`` -> ``("inet", "sandbox")``; a name alone is in family ``ip``, as in
    nft(8). Raises ValueError naming what is wrong."""
    parts = text.split()
    if len(parts) == 1:
        parts = ["ip", parts[0]]
    if len(parts) != 2:
        raise ValueError(f"{text!r}: expected '<family> <table>', e.g. 'inet sandbox'")
    if parts[0] not in FAMILIES:
        raise ValueError(f"{text!r}: family {parts[0]!r} is not one of {', '.join(FAMILIES)}")
    return parts[0], parts[1]


class Nft:
    """One libnftables context, its output and errors buffered. Raises :class:`NftError` when
    the library cannot be loaded."""

    def __init__(self, library: str = LIBRARY) -> None:
        self._ctx = None
        path = library if "/" in library else (ctypes.util.find_library("nftables") or library)
        try:
            lib = ctypes.CDLL(path)
        except OSError as exc:
            raise NftError(f"{library} cannot be loaded ({exc}); install the Debian package "
                           f"{PACKAGE}") from None
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        for getter in (lib.nft_ctx_get_output_buffer, lib.nft_ctx_get_error_buffer):
            getter.restype = ctypes.c_char_p
            getter.argtypes = [ctypes.c_void_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        self._lib = lib
        self._ctx = lib.nft_ctx_new(0)
        if not self._ctx:
            raise NftError("nft_ctx_new failed")
        lib.nft_ctx_output_set_flags(self._ctx, _OUTPUT_JSON)  # before the input flags
        if hasattr(lib, "nft_ctx_input_set_flags"):
            lib.nft_ctx_input_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
            lib.nft_ctx_input_set_flags(self._ctx, _INPUT_JSON)
        lib.nft_ctx_buffer_output(self._ctx)
        lib.nft_ctx_buffer_error(self._ctx)

    def run(self, commands: list[dict[str, Any]], terse: bool = False) -> list[dict[str, Any]]:
        """Run ``commands`` (libnftables-json objects such as ``{"add": {"element": ...}}``)
        as one transaction; the objects printed back (``list`` gives some, without the
        elements of sets when ``terse``), [] for none."""
        if self._ctx is None:
            raise NftError("the nftables context is closed")
        text = orjson.dumps({"nftables": commands})
        self._lib.nft_ctx_output_set_flags(self._ctx, _OUTPUT_JSON | (_OUTPUT_TERSE * terse))
        status = self._lib.nft_run_cmd_from_buffer(self._ctx, text)
        error = (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode(errors="replace")
        output = self._lib.nft_ctx_get_output_buffer(self._ctx) or b""
        if status != 0:
            text = " ".join(dict.fromkeys(_ERROR_PREFIX.sub("", line).strip()
                                          for line in error.splitlines() if line.strip()))
            raise NftError(text or f"nft_run_cmd_from_buffer: {status}")
        if not output.strip():
            return []
        return orjson.loads(output).get("nftables", [])

    def set_info(self, family: str, table: str, name: str,
                 elements: bool = False) -> dict[str, Any]:
        """The set ``name`` of ``family table`` as ``list set`` gives it (``type``, ``flags``,
        and ``elem`` when ``elements``: a pinned set may hold thousands); :class:`NftError`
        says why when there is none: ``no table inet x``, ``no set y in table inet x``, or
        libnftables' words (no permission)."""
        try:
            for item in self.run([{"list": {"set": {"family": family, "table": table,
                                                    "name": name}}}], terse=not elements):
                if "set" in item:
                    return item["set"]
        except NftError as exc:
            if "No such file or directory" not in str(exc):
                raise
        tables = self.run([{"list": {"tables": {"family": family}}}])
        if not any(item.get("table", {}).get("name") == table for item in tables):
            raise NftError(f"no table {family} {table}")
        raise NftError(f"no set {name} in table {family} {table}")

    def updates_timeouts(self) -> bool:
        """Whether ``add element`` of an element already in a set sets its timeout anew (Linux
        6.10 and later) rather than leaving it as it was: tried on a table of its own, made
        and deleted here."""
        name = _PROBE_TABLE.format(pid=os.getpid())
        table = {"family": "inet", "name": name}
        element = {"family": "inet", "table": name, "name": "probe"}
        self.run([{"add": {"table": table}}, {"delete": {"table": table}},
                  {"add": {"table": table}},
                  {"add": {"set": {**element, "type": "ipv4_addr", "flags": ["timeout"]}}}])
        try:
            for timeout in (10, 100):
                self.run([{"add": {"element": {**element, "elem": [
                    {"elem": {"val": "192.0.2.1", "timeout": timeout}}]}}}])
            info = self.set_info("inet", name, "probe", elements=True)
            return any(item.get("elem", {}).get("timeout") == 100
                       for item in info.get("elem", []) if isinstance(item, dict))
        finally:
            self.run([{"delete": {"table": table}}])

    def close(self) -> None:
        """Free the context (idempotent)."""
        if self._ctx is not None:
            self._lib.nft_ctx_free(self._ctx)
            self._ctx = None

    def __del__(self) -> None:
        self.close()
