"""Backfills: a source's slots over a time range, each created once as a job, and the
source's watermark (the latest slot completed with no gap before it).

``plan`` turns a request into its slots (and refuses a bad range before anything is written);
``service`` writes a backfill (or answers a dry run), reads it with its progress and cancels it;
``creation`` is the leader's batch, bounded and paced (``maintenance.backfiller`` calls it each
tick); ``watermark`` moves a source's watermark over its finished slots.
"""
