"""Tenants: the businesses a deployment serves, and their settings.

A tenant's settings belong to the features they configure: delivery providers
(:mod:`voucherd.delivery.settings`), the guard's rate limits (:mod:`voucherd.guard.limits`), the
rolling weekly value limit (:mod:`voucherd.vouchers.limits`). This feature composes their
patches into one ``PATCH /api/v1/tenant``, one transaction. The ``tenant`` table itself stays in
``auth/models.py``, where the keys that reference it are.
"""
