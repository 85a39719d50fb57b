"""The guard: rate limits, and callers who guess voucher codes.

**Rate limits.** Every authenticated request counts against its API key and its tenant, and every
voucher page request against the client's address, in fixed windows of
``rate_limit_window_seconds`` (10 s; 5,000 per key, 20,000 per tenant, 100 per page address by
default, so 500 requests a second per key with bursts: a key is often one till network's, shared
by every till, and its peak is what the default must admit; config.py says why). Past a limit
the answer is 429 in the
face's own error shape with ``Retry-After`` (seconds) and ``X-Rate-Limit-Retry`` (the Unix time
the window ends); every counted answer carries Voucherify's ``X-Rate-Limit-Limit`` and
``X-Rate-Limit-Remaining`` (of the key or the tenant, whichever has less left). A request is
counted against its key, then its tenant, and stops at the first limit it exceeds: the check and
the count are one step, as the house's spend is, and a key refused for its own excess does not
spend its tenant's budget, so one runaway key cannot starve its sibling keys. Fixed windows
because they are what those headers describe, and because a shared total is one counter row per
subject and window.

*Shared, without a round trip per request.* Each API process counts locally and, at most every
``rate_limit_sync_seconds`` (0.2 s), one request adds the process's increments to the shared rows
in one ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` (PostgreSQL and SQLite alike) and
learns the totals of all processes; the other requests never wait for it. A process judges a
request by the last shared total plus its own increments since, so N processes may together
admit up to what N-1 of them admit in one sync interval beyond a limit (at 500 req/s per key and
0.2 s, about 100 requests per other process): a small, bounded overshoot, accepted. With
``rate_limit_sync_seconds=0`` every request writes through and the totals are exact (tests).
If the database does not answer, each process falls back on its own counts. Windows are wall
clock; the guard's ``clock`` is the seam tests move.

**Guessing.** Every lookup of a voucher by its code (validate, redeem, get, cancel and the other
state changes, publishing a given code, the voucher page) goes through one of three core
functions (``vouchers.lookup.find_voucher``, ``redemptions.rules.find_target``,
``pages.service.read_voucher_page``); each asks the guard first (:func:`service.before_lookup`)
and reports a miss (:func:`service.failed_lookup`), so every face, present or future, is guarded
without a line in ``voucherd/dialects``. Misses are counted per API key and per client address
(``guess_window_seconds``, 1 h): past ``guess_slow_after`` (50) a caller may look up one code per
``guess_slow_seconds`` (1 s), past ``guess_refuse_after`` (200) its lookups are refused until the
window ends; both answers are 429 with ``Retry-After`` and code ``too_many_failed_lookups``, and
crossing each threshold writes a ``guard_event`` row (kind, tenant, key, address, count) in the
same transaction as the count, and a log line naming the key, never the address or a code.
Chosen over slowing the answer down (sleeping), which would hold a worker thread per guess and
let a guesser exhaust them. Misses are rare, so they are written through: the middleware adds a
request's misses to the shared counts before its answer leaves, so the count is in place before
the guesser can act on the answer. A process learns a subject's state from its own writes (each
returns the shared total), so across N processes a guesser gets at most N-1 misses past a
threshold. Guessing windows use the Database's clock (``db.now()``), which tests move.

*Never the code.* Nothing is counted per code, so no code is ever locked because someone else
guessed at it: the holder, on another key or address, redeems as before. A code of the default
shape whose check character fails (a typo, also typed in lower case or in groups split by spaces
or dashes when no stored code can be that text) is refused as "mistyped" (``code_mistyped``, a
404) before the guard or the database is asked, and not counted: the check character already
proves it was never issued, and the answer is arithmetic on the typed text that a guesser can do
alone. Text that may be a stored code as it stands (``abcd-efgh``: a ``code_config`` or imported
code) is looked up, and a miss is counted as any other, whatever its words; a lookup that asks for
two codes (the text as typed and voucherd's canonical form of it) counts two misses, so loose
typing probes no more codes per miss than exact typing (``voucherd/codes/typed.py``).

*Every miss reads the same.* An unknown code and another tenant's code get the same status and
body on each face (modulo its request ids), and a typo of either gets the same "mistyped" answer,
so no answer tells a guesser which codes exist; only a caller's own vouchers answer with their
state.

**Client address.** The connection's address (``request.client.host``). ``X-Forwarded-For`` is
believed only from addresses in ``trusted_proxies``, and then its right-most entry that is not
itself a trusted proxy is the client. The counters store a hash of the address, never the
address; a ``guard_event`` keeps the address, which is what an operator blocks.

**Per tenant.** ``PATCH /api/v1/tenant`` with ``rate_limits: {per_key, per_tenant,
guess_slow_after, guess_refuse_after}`` (null restores the operator's default); other API
processes see the change within ``key_cache_seconds``. ``guard_enabled=false`` turns the guard off.
"""
