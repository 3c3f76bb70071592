"""Local stand-ins for the SMS and email providers that speak the real protocols (Twilio Messages API, SMTP).

``python -m devservers.sinks`` runs both for ``make run``; tests start them in-process::

    async with SmsSink(account_sid="ACtest", auth_token="secret") as sms, EmailSink() as email:
        ...  # point the providers at sms.url and email.smtp_port; inspect sms.messages(), email.emails()
"""

from devservers.sinks.email import EmailSink, EmailSinkConfig, create_email_sink_app
from devservers.sinks.sms import SmsSink, SmsSinkConfig, create_sms_sink_app

__all__ = [
    "EmailSink",
    "EmailSinkConfig",
    "SmsSink",
    "SmsSinkConfig",
    "create_email_sink_app",
    "create_sms_sink_app",
]
