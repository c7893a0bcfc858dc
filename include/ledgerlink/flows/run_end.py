"""The end of every run in Airflow: the summary block (the DAG's last task) and the mail to finance when a run fails.

Both read the run from the ledger (``closing.summarise_run``); ``ledgerlink.spine`` wires them into every DAG.
"""
from __future__ import annotations

import logging
import os

from ledgerlink.tasks import ledger, next_run_phrase

log = logging.getLogger(__name__)


def summarise_current_run(flow: str, *, closes_run: bool) -> str:
    """The DAG's last task (trigger rule all_done: it runs when an upstream task failed too): log the run's
    summary block, then fail when any task of the run failed, so the run's state stays honest."""
    from airflow.sdk import get_current_context
    from airflow.sdk.exceptions import AirflowFailException

    context = get_current_context()
    ti, run_id = context["ti"], context["run_id"]
    states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[run_id]).get(run_id, {})
    failed = sorted(task for task, state in states.items()
                    if state in ("failed", "upstream_failed") and task != ti.task_id)
    when = next_run_phrase(context["dag"])
    if closes_run:
        from ledgerlink.flows.closing import summarise_run
        from ledgerlink.flows.params import RunParams
        from ledgerlink.ledger import FAILED

        book = ledger()
        if failed:  # normally closed by the failure callback already; then this changes nothing
            book.end_run_early(run_id, flow, FAILED, f"task(s) {', '.join(failed)} failed")
        try:
            dry_run = RunParams.of(context.get("params")).dry_run
        except Exception:  # noqa: BLE001 - a malformed param failed the run's first task already
            dry_run = False
        text = summarise_run(book, flow, run_id, failed_tasks=failed, next_run=when, dry_run=dry_run).text()
    else:
        text = companion_summary(flow, run_id, states, ti, when, failed)
    log.info("\n%s", text)
    if failed:
        raise AirflowFailException(f"the run did not succeed: task(s) {', '.join(failed)} failed. The summary above "
                                   f"says what was sent, what waits and what happens next.")
    return text


def companion_summary(flow: str, run_id: str, states: dict, ti, when: str, failed: list[str]) -> str:
    """The summary of a DAG that holds no run of its own in the ledger (the e-invoice status poll and daily
    summary): each task's outcome and what it reported."""
    lines = [f"===== Ledgerlink: {flow} =====", f"run: {run_id} | {'FAILED' if failed else 'SUCCEEDED'}"]
    for task_id, state in sorted(states.items()):
        if task_id == ti.task_id:
            continue
        reported = ti.xcom_pull(task_ids=task_id) if state == "success" else None
        if isinstance(reported, str) and "\n" in reported:
            lines.append(f"{task_id}: {state}")
            lines += [f"  {line}" for line in reported.splitlines() if not line.startswith("=====")]
        else:
            lines.append(f"{task_id}: {state}" + (f": {reported}" if reported not in (None, "", {}, [])
                                                  else ": nothing to do" if state == "success" else ""))
    if failed:
        lines.append(f"next: the next run ({when or 'when triggered'}) tries again; nothing is lost")
    else:
        lines.append(f"next: nothing waits; the next run {when}".rstrip())
    return "\n".join(lines)


FINANCE_EMAIL_VARIABLE = "ledgerlink_finance_email"  # an Airflow Variable: who gets a failed run's mail
FINANCE_EMAIL_DEFAULT = "finance@localhost"


def notify_failure(flow: str, *, closes_run: bool = True, smtp_conn_id: str = "smtp_default"):
    """A DAG failure callback that mails finance the run's summary through the SMTP connection (Airflow's SMTP
    provider notifier; the sandbox's SMTP sink in the demo). Recipients: the Airflow Variable
    ``ledgerlink_finance_email`` (comma-separated), else ``LEDGERLINK_FINANCE_EMAIL``, else finance@localhost.
    It never raises: a mail that cannot go is logged, and the run's own failure stands."""

    def callback(context) -> None:
        import html

        try:
            dag_run = context.get("dag_run")
            run_id = context.get("run_id") or getattr(dag_run, "run_id", "")
            text = ""
            if closes_run:
                from ledgerlink.flows.closing import summarise_run

                text = summarise_run(ledger(), flow, run_id, failed_tasks=["(see the run)"],
                                     next_run=next_run_phrase(context["dag"]) if context.get("dag") else "").text()
            reason = context.get("reason") or ""
            subject = f"Ledgerlink: {flow} run {run_id} did not succeed"
            body = (f"<p>{html.escape(subject)}{': ' + html.escape(str(reason)) if reason else ''}.</p>"
                    f"<pre>{html.escape(text)}</pre>")
            try:
                _send_mail(context, subject, body, smtp_conn_id)
            except Exception as e:  # noqa: BLE001 - told apart below; the run's failure stands either way
                # The SMTP hook reports a missing connection as "SMTP connection is not found" over Airflow's
                # AirflowNotFoundException: a setting (no mail wanted here), not an error worth a traceback.
                if "AirflowNotFoundException" in (type(e).__name__, type(e.__context__).__name__):
                    log.warning("No Airflow connection %r: finance was not mailed about run %s of %s", smtp_conn_id,
                                run_id, flow)
                    return
                raise
            log.info("Mailed %s about run %s of %s", _recipients(), run_id, flow)
        except Exception:  # noqa: BLE001 - logged with its traceback; the run's failure stands
            log.exception("Could not mail finance about the failed run of %s", flow)

    return callback


def _recipients() -> list[str]:
    from airflow.sdk import Variable

    try:
        value = Variable.get(FINANCE_EMAIL_VARIABLE, default=None)
    except Exception:  # noqa: BLE001 - no variable backend reachable: the environment's, or the default
        value = None
    value = value or os.environ.get("LEDGERLINK_FINANCE_EMAIL") or FINANCE_EMAIL_DEFAULT
    return [address.strip() for address in value.split(",") if address.strip()]


def _send_mail(context, subject: str, html_content: str, smtp_conn_id: str) -> None:
    """Through the SMTP provider's notifier when it is installed (it is in requirements.txt), else Airflow's own
    e-mail utility on the same connection."""
    try:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier
    except ImportError:
        from airflow.utils.email import send_email

        send_email(_recipients(), subject, html_content, conn_id=smtp_conn_id)
        return
    SmtpNotifier(to=_recipients(), from_email="ledgerlink@localhost", subject=subject, html_content=html_content,
                 smtp_conn_id=smtp_conn_id).notify(context)
