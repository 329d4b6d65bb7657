"""Tenant quotas, per-tenant concurrency caps and fair shares of a queue across tenants.

A quota (``max_queued``) is checked when jobs are submitted, under the tenant's row lock; a
cap (``max_running``) when a worker claims, under the same row's lock; a fair-shared queue's
jobs are published by the leader, round-robin across tenants, a small window at a time.
"""
