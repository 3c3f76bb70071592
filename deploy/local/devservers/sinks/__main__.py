"""``python -m devservers.sinks --sms-port P --smtp-port Q --email-http-port R --voice-port V``: the SMS,
email and voice sinks until Ctrl-C (the voice sink shares the SMS sink's account and auth token)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from devservers.sinks.email import EmailSink
from devservers.sinks.email import config_from_environment as email_config_from_environment
from devservers.sinks.sms import SmsSink
from devservers.sinks.sms import config_from_environment as sms_config_from_environment
from devservers.sinks.voice import VoiceSink
from devservers.sinks.voice import config_from_environment as voice_config_from_environment


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devservers.sinks", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--sms-port", type=int, default=8025)
    parser.add_argument("--smtp-port", type=int, default=2525)
    parser.add_argument("--email-http-port", type=int, default=8026)
    parser.add_argument("--voice-port", type=int, default=8027)
    parser.add_argument("--sms-account-sid", default="AClocal0000000000000000000000000000")
    parser.add_argument("--sms-auth-token", required=True, help="Checks basic auth and signs status callbacks.")
    return parser.parse_args(argv)


async def run(arguments: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sms = SmsSink(
        account_sid=arguments.sms_account_sid,
        auth_token=arguments.sms_auth_token,
        config=sms_config_from_environment(),
        host=arguments.host,
        port=arguments.sms_port,
    )
    email = EmailSink(
        config=email_config_from_environment(),
        host=arguments.host,
        smtp_port=arguments.smtp_port,
        http_port=arguments.email_http_port,
    )
    voice = VoiceSink(
        account_sid=arguments.sms_account_sid,
        auth_token=arguments.sms_auth_token,
        config=voice_config_from_environment(),
        host=arguments.host,
        port=arguments.voice_port,
    )
    async with sms, email, voice:
        print(
            f"SMS sink {sms.url}/sink/messages; SMTP sink {arguments.host}:{email.smtp_port}, "
            f"emails at {email.url}/sink/emails; voice sink {voice.url}/sink/calls",
            file=sys.stderr,
            flush=True,
        )
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(parse_arguments(argv)))


if __name__ == "__main__":
    main()
