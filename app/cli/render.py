"""``hitmap render``: counter thumbnails and world maps drawn now, in this process."""

from __future__ import annotations

import sys

import click

from app.cli import common
from app.sites import authz


@click.command("render")
@click.option("--site", "key", metavar="KEY", help="The site to render.")
@click.option("--all", "all_sites", is_flag=True, help="Render every site.")
@click.option(
    "--range",
    "spans",
    multiple=True,
    type=click.Choice(["24h", "7d", "30d", "365d", "all"]),
    help="Only this map range (repeatable); also skips the thumbnail. Default: the "
    "thumbnail and all five ranges.",
)
@click.option("--force", is_flag=True, help="Redraw even images whose visits did not change.")
def render_command(key: str | None, all_sites: bool, spans: tuple[str, ...], force: bool) -> None:
    """Render counter thumbnails and world maps now, in this process.

    Images whose input did not change since their last render are skipped unless
    --force is given. Exit code 1 when a site is unknown or a render failed.
    """
    from app.maps import repository as map_repo
    from app.maps.service import SPANS
    from app.maps.tasks import render_site_job

    if bool(key) == all_sites:
        raise click.UsageError("give either --site KEY or --all")
    ctx = common.context()
    with ctx.db.session() as session:
        if key:
            site_ids = [authz.site_for_admin(session, key).site_id]
        else:
            site_ids = map_repo.all_site_ids(session)
    wanted = list(spans) or [s.value for s in SPANS]
    counts = {"rendered": 0, "unchanged": 0, "discarded": 0}
    images = failed = 0
    with click.progressbar(site_ids, label="Rendering", show_pos=True, file=sys.stderr) as bar:
        for site_id in bar:
            try:
                result = render_site_job(
                    ctx, site_id, spans=wanted, thumbnail=not spans, force=force
                )
            except Exception as exc:  # one bad site must not stop the others
                failed += 1
                click.echo(f"\nsite {site_id}: render failed: {exc}", err=True)
                continue
            counts[result.status] += 1
            images += result.rendered
    click.echo(
        f"{len(site_ids)} site{'' if len(site_ids) == 1 else 's'}: "
        f"{counts['rendered']} redrawn ({images} images), "
        f"{counts['unchanged']} unchanged, {counts['discarded']} gone, {failed} failed"
    )
    if failed:
        sys.exit(1)
