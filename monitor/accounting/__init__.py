"""Contract accounting (002 3.3, 6.1, 6.2): what account managers and finance work from.

* :mod:`.rules`      the policy's ``accounting`` section;
* :mod:`.facts`      SLA facts, escalations and agent statuses read back from JSON;
* :mod:`.escalation` the 6.2 rules as a pure state machine over SLA outcomes (replay, live);
* :mod:`.presence`   agent presence timelines (who served which channel when);
* :mod:`.causes`     why a breach happened;
* :mod:`.ledger`     the 6.1 penalty ledger, net of retractions;
* :mod:`.report`     the monthly report model (3.3); renderers in :mod:`.render_*`.
"""
