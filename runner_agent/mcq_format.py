"""The 0-shot prompts EvalScope 1.x renders for C-Eval, CMMLU and general_mcq questions, and the answer line it parses.

Mirrored here (not imported) so the agent's parent process never loads EvalScope; a slow test compares these
strings with the prompts EvalScope actually sent, question by question, so a drift in a new release is caught.
"""

from __future__ import annotations

from collections.abc import Sequence

# evalscope/benchmarks/ceval/ceval_adapter.py: USER_PROMPT_TEMPLATE (v1.14.1)
CEVAL_TEMPLATE = (
    "以下是中国关于{subject}的单项选择题，请选出其中的正确答案。"
    '你的回答的最后一行应该是这样的格式："答案：[LETTER]"（不带引号），其中 [LETTER] 是 A、B、C、D 中的一个。\n'
    "\n"
    "问题：{question}\n"
    "选项：\n"
    "{choices}\n"
)

# evalscope/utils/multi_choices.py: CHINESE_SINGLE_ANSWER_TEMPLATE_COT (v1.14.1), used by cmmlu
CMMLU_TEMPLATE = (
    "回答下面的单项选择题，请选出其中的正确答案。"
    '你的回答的最后一行应该是这样的格式："答案：[LETTER]"（不带引号），其中 [LETTER] 是 {letters} 中的一个。'
    "请在回答前进行一步步思考。\n"
    "\n"
    "问题：{question}\n"
    "选项：\n"
    "{choices}\n"
)

# evalscope/utils/multi_choices.py: CHINESE_SINGLE_ANSWER_TEMPLATE (v1.14.1), used by general_mcq
GENERAL_MCQ_TEMPLATE = (
    "回答下面的单项选择题，请选出其中的正确答案。"
    '你的回答的全部内容应该是这样的格式："答案：[LETTER]"（不带引号），其中 [LETTER] 是 {letters} 中的一个。\n'
    "\n"
    "问题：{question}\n"
    "选项：\n"
    "{choices}\n"
)

# The Chinese subject names C-Eval's prompt uses (evalscope's SUBJECT_MAPPING[subject][1]).
CEVAL_SUBJECTS_ZH: dict[str, str] = {
    "computer_network": "计算机网络", "operating_system": "操作系统", "computer_architecture": "计算机组成",
    "college_programming": "大学编程", "college_physics": "大学物理", "college_chemistry": "大学化学",
    "advanced_mathematics": "高等数学", "probability_and_statistics": "概率统计",
    "discrete_mathematics": "离散数学", "electrical_engineer": "注册电气工程师", "metrology_engineer": "注册计量师",
    "high_school_mathematics": "高中数学", "high_school_physics": "高中物理", "high_school_chemistry": "高中化学",
    "high_school_biology": "高中生物", "middle_school_mathematics": "初中数学", "middle_school_biology": "初中生物",
    "middle_school_physics": "初中物理", "middle_school_chemistry": "初中化学", "veterinary_medicine": "兽医学",
    "college_economics": "大学经济学", "business_administration": "工商管理", "marxism": "马克思主义基本原理",
    "mao_zedong_thought": "毛泽东思想和中国特色社会主义理论体系概论", "education_science": "教育学",
    "teacher_qualification": "教师资格", "high_school_politics": "高中政治", "high_school_geography": "高中地理",
    "middle_school_politics": "初中政治", "middle_school_geography": "初中地理",
    "modern_chinese_history": "近代史纲要", "ideological_and_moral_cultivation": "思想道德修养与法律基础",
    "logic": "逻辑学", "law": "法学", "chinese_language_and_literature": "中国语言文学", "art_studies": "艺术学",
    "professional_tour_guide": "导游资格", "legal_professional": "法律职业资格", "high_school_chinese": "高中语文",
    "high_school_history": "高中历史", "middle_school_history": "初中历史", "civil_servant": "公务员",
    "sports_science": "体育学", "plant_protection": "植物保护", "basic_medicine": "基础医学",
    "clinical_medicine": "临床医学", "urban_and_rural_planner": "注册城乡规划师", "accountant": "注册会计师",
    "fire_engineer": "注册消防工程师", "environmental_impact_assessment_engineer": "环境影响评价工程师",
    "tax_accountant": "税务师", "physician": "医师资格",
}  # fmt: skip


def _letters(n: int) -> list[str]:
    return [chr(ord("A") + i) for i in range(n)]


def ceval_prompt(subject: str, question: str, choices: Sequence[str]) -> str:
    if subject not in CEVAL_SUBJECTS_ZH:
        raise KeyError(f"unknown C-Eval subject {subject!r}")
    opts = "\n".join(f"{letter}. {c}" for letter, c in zip(_letters(len(choices)), choices, strict=True))
    return CEVAL_TEMPLATE.format(subject=CEVAL_SUBJECTS_ZH[subject], question=question, choices=opts)


def cmmlu_prompt(question: str, choices: Sequence[str]) -> str:
    # EvalScope strips the "(A) " prefix of each stored choice and then whitespace: mirror what it sees.
    letters = _letters(len(choices))
    opts = "\n".join(f"{letter}) {c.strip()}" for letter, c in zip(letters, choices, strict=True))
    return CMMLU_TEMPLATE.format(letters=",".join(letters), question=question, choices=opts)


def general_mcq_prompt(question: str, choices: Sequence[str]) -> str:
    # Unlike CMMLU, general_mcq shows each option exactly as the file has it (EvalScope strips nothing).
    letters = _letters(len(choices))
    opts = "\n".join(f"{letter}) {c}" for letter, c in zip(letters, choices, strict=True))
    return GENERAL_MCQ_TEMPLATE.format(letters=",".join(letters), question=question, choices=opts)


def prompt(benchmark: str, subject: str, question: str, choices: Sequence[str]) -> str:
    if benchmark == "ceval":
        return ceval_prompt(subject, question, choices)
    if benchmark == "cmmlu":
        return cmmlu_prompt(question, choices)
    if benchmark == "general_mcq":
        return general_mcq_prompt(question, choices)
    raise KeyError(f"no prompt format for benchmark {benchmark!r}")


def answer_line(letter: str) -> str:
    """What a well-formatted reply ends with; EvalScope's Chinese parser reads the letter after `答案：`."""
    return f"答案：{letter}"
