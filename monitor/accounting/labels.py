"""Labels of the report in English and Chinese (``--lang zh``: contract 002's own terms).

Used by every renderer of :mod:`monitor.accounting`. The Chinese terms are the contract's:
平均首次响应时间, 达标率, 未达标次数及原因分析, 服务人员在线情况 (3.3), 违约金 (6.1),
书面解释和改进计划 (6.2), 工作日 / 节假日/周末 (1.4, 1.5).
"""

from __future__ import annotations

_LABELS: dict[str, tuple[str, str]] = {
    "title": ("Monthly response-time report", "在线客服响应时效统计报告"),
    "month": ("Month", "统计月份"),
    "tenant": ("Tenant", "客户"),
    "due": ("Report due", "报告提交期限"),
    "due_note": (
        "{n} working days after month end ({clause})",
        "月结束后{n}个工作日内（{clause}）",
    ),
    "summary": ("Summary", "概要"),
    "channel": ("Channel", "渠道"),
    "subject_type": ("Subject", "类型"),
    "metric": ("Metric", "指标"),
    "period": ("Period", "时段"),
    "targets": ("Targets (s)", "标准（秒）"),
    "requests": ("Requests", "请求数"),
    "met": ("Met", "达标"),
    "breached": ("Breached", "未达标次数"),
    "compliance": ("Compliance", "达标率"),
    "mean": ("Mean response (s)", "平均响应时间（秒）"),
    "mean_first": ("Mean first response (s)", "平均首次响应时间（秒）"),
    "p90": ("p90 (s)", "90分位（秒）"),
    "all": ("all", "全部"),
    "working_hours": ("working hours", "工作日9:00-18:00"),
    "after_hours": ("after hours", "工作日18:00-次日9:00"),
    "rest_day": ("rest day", "节假日/周末"),
    "first_response": ("first response", "首次响应"),
    "next_response": ("next response", "后续响应"),
    "periodic_update": ("progress update", "进度更新"),
    "resolution": ("resolution", "解决"),
    "chat_session": ("chat", "在线咨询"),
    "ticket": ("ticket", "工单"),
    "daily": ("Daily compliance", "每日达标率"),
    "target_line": ("target", "目标"),
    "distribution": ("First-response distribution", "首次响应时间分布"),
    "seconds": ("seconds", "秒"),
    "sessions": ("sessions", "会话数"),
    "causes": ("Breaches by cause", "未达标原因分析"),
    "breaches": ("Breaches", "未达标明细"),
    "cause": ("Cause", "原因"),
    "no_agent_online": ("no agent online", "无服务人员在线"),
    "overloaded": ("overloaded", "服务人员超负荷"),
    "bot_only": ("bot only", "仅机器人回复"),
    "slow_response": ("slow response", "人工响应过慢"),
    "presence": ("Agent presence", "服务人员在线情况"),
    "agents": ("Agents", "服务人员数"),
    "agent_hours": ("Online agent-hours", "在线人时"),
    "uncovered": ("Working hours with nobody online", "工作时间无人在线（小时）"),
    "ledger": ("Penalty ledger", "违约金明细"),
    "amount": ("Amount", "金额"),
    "currency": ("Currency", "币种"),
    "clause": ("Clause", "条款"),
    "total": ("Total", "合计"),
    "retracted": ("Breaches retracted (not charged)", "已撤销的未达标（不计违约金）"),
    "escalations": ("Escalations", "书面解释和改进计划要求"),
    "rule": ("Rule", "规则"),
    "breach_count": ("N breaches", "累计未达标次数"),
    "slow_days": ("consecutive slow days", "连续多日平均首次响应超标"),
    "tripped_at": ("Tripped at", "触发时间"),
    "explanation_due": ("Explanation due", "书面解释期限"),
    "evidence": ("Evidence", "依据"),
    "session": ("Session", "会话"),
    "started": ("Started", "发起时间"),
    "deadline": ("Deadline", "截止时间"),
    "date": ("Date", "日期"),
    "none": ("none", "无"),
    "empty": ("No data for this tenant and month.", "本月无该客户的数据。"),
    "notes": ("Notes", "说明"),
    "open_targets": ("Targets still open", "尚未结束的时效"),
}


def labeler(lang: str) -> dict[str, str]:
    """Every label in ``lang`` (``en`` or ``zh``)."""
    index = 1 if lang == "zh" else 0
    return {key: pair[index] for key, pair in _LABELS.items()}
