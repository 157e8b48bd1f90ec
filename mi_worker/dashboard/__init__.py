"""The read-only web dashboard (issue 16): Flask pages served by waitress, named SELECTs only.

Overview (workers, queue, last hour / day charts, alerts, the day's reconciliation), the
request list (filters, keyset paging), a request's attempt log / answer / reversal chain, the
rows that need a person, alerts and reconciliation. Personal data is masked before rendering.
"""
