"""`mi-worker sandbox`: run the fake centre in the foreground for demos and manual tests."""
from __future__ import annotations

import click

from mi_worker.sandbox import catalogs, defaults
from mi_worker.sandbox.server import TRANSPORTS, SandboxServer


@click.command("sandbox")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (keep loopback unless you know why).")
@click.option("--port", default=8097, show_default=True, type=int, help="0 = any free port.")
@click.option("--transport", type=click.Choice(TRANSPORTS), default="single", show_default=True)
@click.option("--secret", default=defaults.SECRET, show_default=True,
              help="x-tif secret / CSB secretKey the sandbox expects.")
@click.option("--latency", default=0.0, type=float, show_default=True,
              help="Seconds added to every answer.")
@click.option("--no-sign-in", is_flag=True, help="Do not require a 9001 sign_no.")
@click.option("--tls-cert", default=None, type=click.Path(exists=True, dir_okay=False),
              help="PEM server certificate: serve HTTPS (to rehearse the 专网 TLS set-up).")
@click.option("--tls-key", default=None, type=click.Path(exists=True, dir_okay=False),
              help="PEM key of --tls-cert (if not inside it).")
@click.option("--tls-client-ca", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Require client certificates signed by this CA (mutual TLS).")
@click.option("--catalog-rows", "catalog_rows", multiple=True, metavar="CODE=ROWS",
              help="Rows of a 13xx catalogue (目录下载), e.g. 1301=100000; repeatable. "
                   "Default: " + ", ".join(f"{c} {n}" for c, n in catalogs.DEFAULT_ROWS.items())
                   + f", others {catalogs.OTHER_ROWS}.")
def sandbox(host: str, port: int, transport: str, secret: str, latency: float,
            no_sign_in: bool, tls_cert: str, tls_key: str, tls_client_ca: str,
            catalog_rows: tuple) -> None:
    """Run the SANDBOX (a fake 医保中心), never the real national platform."""
    sizes = {}
    for item in catalog_rows:
        code, _, rows = item.partition("=")
        if code not in catalogs.CODES or not rows.isdigit():
            raise click.BadParameter(f"{item!r}: want CODE=ROWS with CODE 1301…1319",
                                     param_hint="--catalog-rows")
        sizes[code] = int(rows)
    server = SandboxServer(host=host, port=port, transport=transport, secret=secret,
                           latency=latency, require_sign_in=not no_sign_in,
                           tls_cert=tls_cert, tls_key=tls_key, tls_client_ca=tls_client_ca)
    server.catalogs.size.update(sizes)
    server.start()
    line = "=" * 78
    click.secho(line, fg="yellow", err=True)
    click.secho(defaults.BANNER, fg="yellow", bold=True, err=True)
    click.secho(line, fg="yellow", err=True)
    click.echo(f"gateway.kind = nhsa (or sandbox)\ngateway.transport = {transport}\n"
               f"gateway.url = {server.url}")
    if transport == "tif":
        click.echo(f"gateway.paasid = {server.paasid}\ngateway.secret = {secret}")
    elif transport == "csb":
        click.echo(f"gateway.access_key = {server.access_key}\ngateway.secret = {secret}")
    click.echo(f"control: GET {server.base_url}/_control/ledger | /_control/calls ; "
               f"POST /_control/faults | /_control/reset | /_control/expire_sign_in")
    click.echo("Ctrl-C to stop.")
    server.serve_forever()
