"""``custody-watch feed``: an agency's custody feed, pushed from a JSON or CSV file."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from cli import feeds, output
from cli.client import Api, CliError
from cli.options import DEFAULT_INGEST, ApiKey, IngestUrl, feed_api
from cli.output import fail, out, progress

EXIT_REJECTED = 2
"""``feed push`` got through, but the service rejected some records: a script can tell this from a failure (1)."""

feed_app = typer.Typer(help="An agency's custody feed.", no_args_is_help=True)


def push_json(api: Api, agency_id: str, path: Path, batch_size: int) -> feeds.PushSummary:
    records = feeds.read_records(path)
    digest = feeds.file_sha256(path)
    summary = feeds.PushSummary()
    with progress() as bar:
        task = bar.add_task(f"pushing {path.name}", total=len(records))
        cut = list(feeds.batches(records, batch_size))
        for number, (offset, batch) in enumerate(cut):
            try:
                answer = api.request(
                    "POST",
                    f"/v1/agencies/{agency_id}/custody-events",
                    json={"records": batch},
                    headers={"Idempotency-Key": feeds.idempotency_key(digest, batch_size, number)},
                    ok=(200,),
                    retry=True,
                )
            except CliError as error:
                hint = "; try a smaller --batch-size" if "(413)" in str(error) else ""
                if number == 0:
                    raise CliError(f"{error}{hint}") from None
                raise CliError(
                    f"batch {number + 1} of {len(cut)} (records {offset}-{offset + len(batch) - 1}): "
                    f"{str(error).rstrip('.')}{hint}. The {number} batch(es) before it went through; running the same "
                    "command again is safe: batches already taken are answered, not applied twice."
                ) from None
            summary.add_batch(offset, answer)
            bar.advance(task, len(batch))
    return summary


def push_csv(api: Api, agency_id: str, path: Path, poll_interval: float, timeout: float) -> feeds.PushSummary:
    rows = feeds.count_csv_rows(path)
    size = path.stat().st_size
    with progress() as bar:
        upload = bar.add_task(f"uploading {path.name} (bytes)", total=size)

        def chunks() -> Iterator[bytes]:
            for chunk in feeds.file_chunks(path):
                yield chunk
                bar.advance(upload, len(chunk))

        job = api.request(
            "POST",
            f"/v1/agencies/{agency_id}/custody-files",
            content=chunks(),
            headers={"Content-Type": "text/csv", "Content-Length": str(size)},
            ok=(202,),
        )
        processing = bar.add_task("processing rows", total=rows)
        deadline = time.monotonic() + timeout
        while True:
            job = api.request(
                "GET",
                f"/v1/agencies/{agency_id}/custody-files/{job['job_id']}",
                params={"errors_limit": 10},
                retry=True,
            )
            bar.update(processing, completed=min(int(job.get("rows_processed", 0)), rows))
            if job.get("status") in ("processed", "failed"):
                break
            if time.monotonic() > deadline:
                raise CliError(
                    f"file job {job['job_id']} still {job.get('status')} after {timeout:.0f} s; "
                    f"follow it at GET /v1/agencies/{agency_id}/custody-files/{job['job_id']}"
                )
            time.sleep(poll_interval)
        if job.get("status") == "processed":
            bar.update(processing, total=max(rows, int(job.get("rows_processed", 0))), completed=job["rows_processed"])
    if job.get("status") == "failed":
        raise CliError(f"the service could not process the file: {job.get('error')}")
    summary = feeds.PushSummary()
    summary.add_job(job)
    return summary


@feed_app.command("push")
def feed_push(
    agency_id: Annotated[str, typer.Argument(help="The agency whose feed this is.")],
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="A .json or a .csv feed file.")
    ],
    *,
    batch_size: Annotated[
        int, typer.Option(min=1, max=feeds.MAX_BATCH_SIZE, help="Records per request (JSON files).")
    ] = 1_000,
    api_key: ApiKey = None,
    ingest_url: IngestUrl = DEFAULT_INGEST,
    poll_interval: Annotated[float, typer.Option(min=0.05, help="Seconds between checks of a CSV job.")] = 0.5,
    timeout: Annotated[float, typer.Option(min=1, help="Give up waiting for a CSV job after this long.")] = 3600,
) -> None:
    """Push a feed file. JSON (an array, or {"records": [...]}) goes in batches, each with an Idempotency-Key made
    from the file's hash and the batch number, so running the same command again after a failure is safe. CSV is
    streamed to the file endpoint and followed until processed. Exits 1 on failure, 2 if records were rejected."""
    csv = feeds.is_csv(file)
    try:
        with feed_api(ingest_url, api_key) as api:
            summary = (
                push_csv(api, agency_id, file, poll_interval, timeout)
                if csv
                else push_json(api, agency_id, file, batch_size)
            )
    except (CliError, feeds.FeedFileError) as error:
        raise fail(str(error)) from None
    out.print(f"{file.name}: {summary.total} records · {output.summary_line(summary)}")
    for line in output.rejection_lines(summary, csv=csv):
        out.print(line)
    if summary.rejected:
        raise typer.Exit(EXIT_REJECTED)
