"""The message catalogue: every user-visible phrase tunebot renders, in English and Chinese."""

from __future__ import annotations

from typing import Literal

Language = Literal["en", "zh"]
LANGUAGES: tuple[Language, ...] = ("en", "zh")

_ALIASES: dict[str, Language] = {
    "en": "en", "en-us": "en", "en_us": "en", "en-gb": "en", "english": "en",
    "zh": "zh", "zh-cn": "zh", "zh_cn": "zh", "zh-hans": "zh", "cn": "zh", "chinese": "zh", "中文": "zh",
}


def normalize_language(value: str) -> Language:
    """"zh", "zh-CN", "cn", "中文" → zh; "en", "en-US", "english" → en; anything else is an error, not a guess."""
    lang = _ALIASES.get(value.strip().lower())
    if lang is None:
        raise ValueError(f"unsupported language {value!r}; use one of: en, zh")
    return lang


# key -> (English, Chinese). Placeholders use str.format names.
_MESSAGES: dict[str, tuple[str, str]] = {
    # states
    "state.queued": ("queued", "排队中"),
    "state.dispatched": ("dispatched", "已派发"),
    "state.running": ("running", "运行中"),
    "state.succeeded": ("succeeded", "已完成"),
    "state.failed": ("failed", "失败"),
    "state.cancelled": ("cancelled", "已取消"),
    "phase.download": ("downloading the model", "下载模型"),
    "phase.train": ("training", "训练"),
    "phase.merge": ("merging the adapter", "合并适配器"),
    "phase.eval": ("evaluating", "评测"),
    "phase.upload": ("uploading artifacts", "上传产物"),
    # verdicts
    "verdict.improved": ("improved", "显著提升"),
    "verdict.regressed": ("regressed", "显著下降"),
    "verdict.within_noise": ("within noise", "在噪声范围内"),
    "verdict.untested": ("not tested", "未检验"),
    "conclusion.success": ("success", "通过"),
    "conclusion.neutral": ("neutral", "中性"),
    "conclusion.failure": ("failure", "失败"),
    # headline pieces
    # {change} is the English signed Δ, or in Chinese the first item's "本次PR提升CMMLU成绩2.3个百分点" / later
    # items' "C-Eval成绩下降0.4个百分点" (built in github.headline).
    "head.significant": ("{change} ({p}, significant)", "{change}（显著，{p}）"),
    "head.noise": ("{change} (within noise)", "{change}（在噪声范围内）"),
    "head.unchanged": ("{bench} ±0.0 (unchanged)", "{bench}成绩不变"),
    "head.untested": ("{change} (not tested: no per-question data)", "{change}（未检验：缺少逐题结果）"),
    "head.sep": (" · ", "；"),
    "head.nothing": ("No benchmark in common: nothing to compare", "两次运行没有共同的评测集，无法比较"),
    # comparison report
    "cmp.title": ("Evaluation comparison", "评测对比"),
    "cmp.commits": ("Baseline: the same `/train` run at {base}; this PR: at {new}.",
                    "基线：在 {base} 运行相同的 `/train`；本 PR：在 {new}。"),
    "prov.title": ("Identities", "身份与哈希"),
    "prov.recipe": ("recipe (training result key)", "训练配方（训练结果键）"),
    "prov.eval": ("{bench} result key", "{bench} 结果键"),
    "prov.adapter": ("adapter sha256 (as saved)", "适配器 sha256（保存时）"),
    "prov.model": ("model as resolved by the runner", "运行器解析到的模型"),
    "prov.requested": ("requested", "请求"),
    "prov.data_read": ("training data as the runner read it", "运行器实际读取的训练数据"),
    "prov.unresolved": ("not resolved by the hub", "平台未给出解析版本"),
    "prov.input_adapter": ("adapter sha256 required of the input", "输入适配器须匹配的 sha256"),
    "cmp.single_seed": ("*Single seed: training noise not measured.*", "*单一随机种子：未测量训练噪声。*"),
    "cmp.seeds": ("*{k} seeds per side ({seeds}): scores are means across seeds, and Δ, p and the interval come from "
                  "Welch's t-test on the per-seed scores, so training noise is measured.*",
                  "*每侧 {k} 个随机种子（{seeds}）：分数为各种子的均值，Δ、p 值与区间来自对各种子分数的 Welch t 检验，"
                  "已计入训练噪声。*"),
    "cmp.seed_line": ("{bench}: baseline {base} ({base_stat}) → this PR {new} ({new_stat})",
                      "{bench}：基准 {base}（{base_stat}）→ 本 PR {new}（{new_stat}）"),
    "cmp.differs": ("What differs (baseline → this PR):", "差异（基准 → 本 PR）："),
    "cmp.same_recipe": ("🟰 **Same recipe as {ref}**: this PR (at {head}) changed no training data and no setting "
                        "(recipe {recipe}), so it trains what {ref} trains. Nothing to compare.",
                        "🟰 **与 {ref} 的训练配方相同**：本 PR（{head}）没有改动训练数据或任何设置（配方 {recipe}），"
                        "训练结果与 {ref} 相同，无需对比。"),
    "cmp.backfill": ("⏳ Baseline {ref}: training the same recipe there as run {run}; the comparison with {new} is "
                     "posted when it lands. What differs:{changes}",
                     "⏳ 基准 {ref}：正在以运行 {run} 在该提交上训练相同配方；"
                     "完成后发布与 {new} 的对比。差异：{changes}"),
    "cmp.baseline_training": ("{ref}: training", "{ref}：训练中"),
    "cmp.baseline_failed": ("{ref}: failed", "{ref}：失败"),
    "cmp.head_failed": ("❌ This PR's side of the comparison with {ref} is missing: run {run} (seed {seed}) ended "
                        "{state}, so the comparison will not come. Why: {reason}\n\nFix the cause and "
                        "`/retry {run_id}` (the comparison is posted when it lands), or ask again with fewer seeds.",
                        "❌ 与 {ref} 对比中本 PR 一侧缺失：运行 {run}（随机种子 {seed}）以 {state} 结束，"
                        "因此对比不会发布。原因：{reason}\n\n修复原因后 `/retry {run_id}`（完成后发布对比），"
                        "或以更少的随机种子重新请求。"),
    "cmp.backfill_failed": ("❌ Baseline {ref} ended {state} (run {run}), so the comparison with {new} will not come. "
                            "Why: {reason}\n\nFix the cause and `/retry {run_id}`, or compare with "
                            "`/compare base-model` or a run id.",
                            "❌ 基准 {ref} 以 {state} 结束（运行 {run}），因此与 {new} 的对比不会发布。"
                            "原因：{reason}\n\n"
                            "排除原因后 `/retry {run_id}`，或改用 `/compare base-model` 或某个运行 ID 对比。"),
    "cmp.against": ("Comparing {new} against {base} on the questions both runs answered.",
                    "对比 {new} 与基线 {base}（仅比较两次运行都作答的题目）。"),
    "cmp.check": ("**Check: {conclusion}** — decided by rule `{rule}`: {explanation}",
                  "**检查结论：{conclusion}** —— 依据规则 `{rule}`：{explanation}"),
    "cmp.col.benchmark": ("Benchmark", "评测集"),
    "cmp.col.subject": ("Subject", "科目"),
    "cmp.col.n": ("n", "题数"),
    "cmp.col.base": ("Baseline", "基线"),
    "cmp.col.new": ("New", "本次"),
    "cmp.col.delta": ("Δ (points)", "Δ（百分点）"),
    "cmp.col.ci": ("95% CI", "95% 置信区间"),
    "cmp.col.p": ("p (McNemar)", "p（McNemar）"),
    "cmp.col.p_seeds": ("p (Welch, seeds)", "p（Welch，跨种子）"),
    "cmp.col.p_holm": ("p (Holm)", "p（Holm 校正）"),
    "cmp.col.verdict": ("Verdict", "结论"),
    "cmp.notes": ("Notes", "说明"),
    "cmp.note.common": (
        "{bench}: the two runs did not answer the same questions ({only_base} only in the baseline, {only_new} only "
        "in the new run); compared on the {n} questions both answered.",
        "{bench}：两次运行作答的题目不同（仅基线 {only_base} 题，仅本次 {only_new} 题），只比较共同作答的 {n} 题。"),
    "cmp.note.config": (
        "{bench}: the runs used different evaluation settings (config hash differs); the comparison may not be "
        "like for like.",
        "{bench}：两次运行的评测配置不同（配置哈希不一致），对比结果可能不可比。"),
    "cmp.note.unpaired": (
        "{bench}: no per-question outcomes, so the change was not tested; scores are each run's own totals.",
        "{bench}：缺少逐题结果，未做显著性检验；分数为各自运行的总分。"),
    "cmp.note.holm": (
        "Per-subject verdicts are Holm-corrected for the number of subjects tested in each benchmark ({m}; "
        "α = {alpha}): with many subjects tested at once, an uncorrected p < {alpha} would often be chance.",
        "逐科目结论已按每个评测集同时检验的科目数做 Holm 多重比较校正（{m}；α = {alpha}）：同时检验多个科目时，"
        "未经校正的 p < {alpha} 很可能只是偶然。"),
    "cmp.note.only_base": ("Only in the baseline (not compared): {names}.", "仅基线有、未比较的评测集：{names}。"),
    "cmp.note.only_new": ("Only in the new run (not compared): {names}.", "仅本次运行有、未比较的评测集：{names}。"),
    "cmp.note.small": (
        "{bench}: with {n} questions of which {flips} changed outcome, changes smaller than about {mde} points are "
        "hard to tell from noise.",
        "{bench}：{n} 道题中有 {flips} 道结果变化，小于约 {mde} 个百分点的变化难以与噪声区分。"),
    "cmp.first_seed": (" — seed {seed}'s pair of runs only", "——仅随机种子 {seed} 的一对运行"),
    "cmp.subjects": ("{bench}: {m} subjects ({improved} improved, {regressed} regressed)",
                     "{bench}：{m} 个科目（{improved} 个显著提升，{regressed} 个显著下降）"),
    "cmp.flips": ("{bench}: {total} questions flipped ({rw} right → wrong, {wr} wrong → right)",
                  "{bench}：{total} 道题结果翻转（{rw} 道由对变错，{wr} 道由错变对）"),
    "cmp.flips.rw": ("Right → wrong", "由对变错"),
    "cmp.flips.wr": ("Wrong → right", "由错变对"),
    "cmp.flips.more": ("… and {more} more", "……另有 {more} 道"),
    "cmp.method": (
        "Method: two-sided exact McNemar test on the questions whose outcome changed; 95% paired bootstrap interval "
        "for Δ ({resamples} resamples, seed {seed}); α = {alpha}.",
        "方法：对结果发生变化的题目做双侧精确 McNemar 检验；Δ 的 95% 配对 bootstrap 置信区间（{resamples} 次重采样，"
        "种子 {seed}）；α = {alpha}。"),
    "cmp.continued": ("*(continued, part {i} of {n})*", "*（续，第 {i}/{n} 部分）*"),
    "split.continued": (" (continued)", "（续）"),
    "links.actions": ("Actions run", "Actions 运行"),
    "links.artifacts": ("Artifacts", "产物"),
    "links.base": ("baseline run", "基线运行"),
    "links.new": ("new run", "本次运行"),
    "links.tracker": ("{tool} run page", "{tool} 运行页面"),
    "card.tracker.tensorboard": ("TensorBoard event files: `tensorboard/` in the run's artifact {artifact}",
                                 "TensorBoard 事件文件：本次运行产物 {artifact} 中的 `tensorboard/`"),
    "card.tracker.missing": ("{tool}: no run page appeared in the training log; check the runner's {tool} settings",
                             "{tool}：训练日志中没有出现运行页面，请检查运行器的 {tool} 设置"),
    # run card
    "card.title": ("tunebot run {run}: {state}", "tunebot 运行 {run}：{state}"),
    "card.requested": ("requested by @{actor} on {where}", "由 @{actor} 在 {where} 发起"),
    "card.col.model": ("Model", "模型"),
    "card.col.tuner": ("Tuner", "微调方式"),
    "card.col.hyper": ("Hyper-parameters", "超参数"),
    "card.col.kind": ("Job", "任务"),
    "card.progress": ("Progress", "进度"),
    "card.step": ("step {step}/{total}", "第 {step}/{total} 步"),
    "card.loss": ("loss {loss}", "损失 {loss}"),
    "card.lr": ("lr {lr}", "学习率 {lr}"),
    "card.eta": ("ETA {eta}", "预计剩余 {eta}"),
    "card.speed": ("{speed} samples/s", "{speed} 样本/秒"),
    "card.col.lr": ("Learning rate", "学习率"),
    "card.col.eta": ("ETA", "预计剩余"),
    "card.col.speed": ("Samples/s", "样本/秒"),
    "card.col.loss": ("Loss", "损失"),
    "card.epoch": ("epoch {epoch}", "第 {epoch} 轮"),
    "card.scores": ("Scores", "评测成绩"),
    "card.col.score": ("Score", "得分"),
    "card.col.baseline": ("Baseline", "基线"),
    "card.loss_curve": ("Training loss", "训练损失"),
    "card.reason": ("Reason", "原因"),
    "card.started": ("started {t}", "开始于 {t}"),
    "card.finished": ("finished {t} (took {d})", "结束于 {t}（用时 {d}）"),
    "card.elapsed": ("running for {d}", "已运行 {d}"),
    "card.updated": ("updated {t}", "更新于 {t}"),
    "card.waiting": ("Waiting for a runner…", "等待运行器…"),
    "card.served_fallback": ("served evaluation could not start: scored natively (these scores are kept with the "
                             "native ones, apart from served scores)",
                             "服务化评测未能启动：已改用原生路径评分（这些分数与原生分数归在一起，不与服务化分数混用）"),
    "card.chart.step": ("step", "步数"),
    "card.chart.loss": ("loss", "损失"),
    "card.dropped": ("{k} non-finite loss values left out", "已略去 {k} 个非有限的损失值"),
    # status list
    "status.title": ("tunebot runs on this pull request", "本 PR 的 tunebot 运行"),
    "status.empty": ("No tunebot runs on this pull request yet.", "本 PR 还没有 tunebot 运行。"),
    "status.col.run": ("Run", "运行"),
    "status.col.command": ("Command", "命令"),
    "status.col.state": ("State", "状态"),
    "status.col.progress": ("Progress", "进度"),
    "status.col.started": ("Started", "开始时间"),
    "status.col.links": ("Links", "链接"),
    "status.more": ("… and {more} older runs", "……以及更早的 {more} 次运行"),
    # cached result
    "cached.body": (
        "An identical evaluation already ran in run {run} at {sha}; its results are reused below. "
        "Use `force=true` to run it again.",
        "相同的评测已在运行 {run}（提交 {sha}）中完成，下面直接复用其结果。如需重新运行，请加上 `force=true`。"),
    # replies to commands
    "reply.refused": ("@{actor} `{command}`: {reason}", "@{actor} `{command}`：{reason}"),
    "reply.plan_error": ("⚠️ `{command}`: {error}", "⚠️ `{command}`：{error}"),
    "reply.pr_only": ("`/{verb}` runs on pull requests: comment it on a PR.",
                      "`/{verb}` 只能用于 Pull Request：请在 PR 中评论。"),
    "reply.cancel.none": ("Nothing to cancel: this PR has no active run.",
                          "没有可取消的运行：本 PR 没有进行中的运行。"),
    "reply.cancel.none_named": ("Nothing to cancel: run `{run}` is not active ({state}).",
                                "没有可取消的运行：运行 `{run}` 不在进行中（{state}）。"),
    "reply.cancel.unknown": ("Nothing to cancel: this repository has no run `{run}`.",
                             "没有可取消的运行：本仓库没有运行 `{run}`。"),
    "reply.cancelling": ("Cancelling `{run}`.", "正在取消 `{run}`。"),
    "reply.retry.none": ("Nothing to retry: no failed or cancelled run on this PR.",
                         "没有可重试的运行：本 PR 没有失败或已取消的运行。"),
    "reply.retry.unknown": ("Nothing to retry: this repository has no run `{run}`.",
                            "没有可重试的运行：本仓库没有运行 `{run}`。"),
    "reply.retry.not_ended": ("`{run}` is {state}: only a failed or cancelled run can be retried.",
                              "`{run}` 当前状态为{state}：只能重试失败或已取消的运行。"),
    "reply.retry.started": ("Retrying `{old}` as `{new}`.", "正在以 `{new}` 重试 `{old}`。"),
    "reply.status.unknown": ("This repository has no run `{run}`.", "本仓库没有运行 `{run}`。"),
    "reply.approve.pr_only": ("`/ok-to-train` approves a pull request: comment it on the PR.",
                              "`/ok-to-train` 用于批准 Pull Request：请在 PR 中评论。"),
    "reply.approved": ("✅ @{actor} approved training on `{sha}`. A new push voids this approval.",
                       "✅ @{actor} 已批准在 `{sha}` 上训练。新的推送会使本次批准失效。"),
    # /plan and plan=true (commands/costplan.py)
    "plan.title": ("📋 **Plan** for `{command}`: nothing was started.", "📋 **计划** `{command}`：未启动任何任务。"),
    "plan.recipe": ("**{kind}** `{model}` · tuner `{tuner}` · data: {datasets} · benchmarks: {benchmarks}",
                    "**{kind}** `{model}` · 方式 `{tuner}` · 数据：{datasets} · 评测：{benchmarks}"),
    "plan.hyper": ("- Settings: lora_rank={rank}, lora_alpha={alpha}, learning_rate={lr}, batch={batch}×{accum}, "
                   "max_length={length}, {steps}, {dtype}{quant}, seed={seed}",
                   "- 参数：lora_rank={rank}，lora_alpha={alpha}，learning_rate={lr}，batch={batch}×{accum}，"
                   "max_length={length}，{steps}，{dtype}{quant}，seed={seed}"),
    "plan.memory": ("- Peak GPU memory per device: **{total} GiB** (weights {weights}, trainable state {trainable}, "
                    "activations {activations}, overhead {overhead}; ±{acc}%): {fits}",
                    "- 每卡峰值显存：**{total} GiB**（权重 {weights}，可训练状态 {trainable}，激活 {activations}，"
                    "其他 {overhead}；误差 ±{acc}%）：{fits}"),
    "plan.fits": ("fits one {gpu} ({mem} GiB)", "单张 {gpu}（{mem} GiB）可放下"),
    "plan.no_fit": ("⚠️ does **not** fit one {gpu} ({mem} GiB): lower max_length or batch, use `tuner=qlora`, "
                    "or more GPUs with ZeRO",
                    "⚠️ 单张 {gpu}（{mem} GiB）**放不下**：请减小 max_length 或 batch，改用 `tuner=qlora`，或多卡 ZeRO"),
    "plan.arch_guessed": ("- (the preset declares no architecture: it was estimated from the model size)",
                          "- （该预设未声明模型结构，按参数量估算）"),
    "plan.params": ("- Parameters: {params}, trainable: {trainable}", "- 参数量：{params}，可训练：{trainable}"),
    "plan.tokens": ("- Tokens: at most {tokens} ({steps} steps × {batch} sequences × {length} tokens)",
                    "- Token 数：至多 {tokens}（{steps} 步 × {batch} 条 × {length} token）"),
    "plan.tokens_unknown": ("- Tokens and GPU-hours: unknown until the data is downloaded; give `max_steps=` or "
                            "`max_samples=` for an estimate",
                            "- Token 数与 GPU 时：数据下载前未知；请指定 `max_steps=` 或 `max_samples=` 以便估算"),
    "plan.hours": ("- Compute: {flops} FLOPs (6·N·tokens) ≈ **{hours} GPU-hours** ({wall} h on {n}× {gpu} at "
                   "{mfu}% MFU){declared}",
                   "- 计算量：{flops} FLOPs（6·N·tokens）≈ **{hours} GPU 时**（{n}× {gpu}，MFU {mfu}%，约 {wall} 小时）"
                   "{declared}"),
    "plan.gpu_assumed": (" — no `gpu.type` in .tunebot.yml, so this assumes one",
                         " —— .tunebot.yml 未设置 `gpu.type`，按此型号估算"),
    "plan.no_estimate": ("- Evaluation only: no training cost", "- 仅评测：无训练开销"),
    "plan.queue": ("Queue: {queue} run(s) of this repository ahead of it.", "队列：本仓库前面还有 {queue} 个运行。"),
    "plan.needs_approval": ("⏸️ Needs approval: {reason}. A maintainer starts exactly this plan with "
                            "`/approve {hash}`.",
                            "⏸️ 需要批准：{reason}。维护者评论 `/approve {hash}` 即可启动本计划。"),
    "plan.hash": ("Plan `{hash}` at `{sha}` (a new push or other settings make another plan).",
                  "计划 `{hash}`，提交 `{sha}`（新的推送或不同参数会生成新的计划）。"),
    "reply.plan.waiting": ("⏸️ @{actor} `{command}` waits for approval: {reason}. Someone with `{level}` permission "
                           "comments `/approve {hash}` to start exactly this plan at `{sha}`.",
                           "⏸️ @{actor} `{command}` 等待批准：{reason}。拥有 `{level}` 权限的成员评论 `/approve {hash}` "
                           "即可在 `{sha}` 上启动本计划。"),
    "reply.plan.approved": ("✅ @{actor} approved plan `{hash}` of @{requester} (`{command}`): starting it.",
                            "✅ @{actor} 批准了 @{requester} 的计划 `{hash}`（`{command}`），正在启动。"),
    "reply.plan.none": ("Nothing to approve: no plan on this PR waits for approval.",
                        "没有待批准的计划：本 PR 没有等待批准的计划。"),
    "reply.plan.stale": ("Plan `{hash}` was made at `{old}`, but the PR's head is now `{new}`: comment the command "
                         "again to plan it at the new commit.",
                         "计划 `{hash}` 基于 `{old}`，但 PR 最新提交已是 `{new}`："
                         "请重新评论该命令以在新提交上生成计划。"),
    "reply.plan.unknown": ("No plan `{hash}` waits for approval on this PR (waiting: {waiting}).",
                           "本 PR 没有等待批准的计划 `{hash}`（等待中：{waiting}）。"),
    "reply.resume.none": ("Nothing to resume: no cancelled or failed training run on this PR.",
                          "没有可继续的运行：本 PR 没有已取消或失败的训练运行。"),
    "reply.resume.unknown": ("Nothing to resume: this repository has no run `{run}`.",
                             "没有可继续的运行：本仓库没有运行 `{run}`。"),
    "reply.resume.not_training": ("`{run}` does not train: only a training run resumes from a checkpoint.",
                                  "`{run}` 不是训练运行：只有训练运行可以从检查点继续。"),
    "reply.resume.not_ended": ("`{run}` is {state}: only a cancelled or failed run can be resumed.",
                               "`{run}` 当前状态为{state}：只能继续已取消或失败的运行。"),
    "reply.resume.no_checkpoint": ("`{run}` uploaded no checkpoint before it stopped (it saves every `save_steps`): "
                                   "`/retry {run}` trains it again from the start.",
                                   "`{run}` 停止前没有上传检查点（每 `save_steps` 步保存一次）：可用 `/retry {run}` "
                                   "从头重新训练。"),
    "reply.resume.started": ("Resuming `{run}` from checkpoint-{step} as `{new}`: training continues at step {step}.",
                             "正在以 `{new}` 从 checkpoint-{step} 继续 `{run}`：训练从第 {step} 步接着进行。"),
    "reply.resume.auto": ("The runner of `{run}` was lost mid-training. Resuming it once, automatically, from the "
                          "checkpoint-{step} it uploaded, as `{new}`.",
                          "`{run}` 的 runner 在训练中途丢失。已自动（仅一次）从其上传的 checkpoint-{step} 继续，"
                          "新运行为 `{new}`。"),
    "reply.cancel.checkpoint": ("Cancelling `{run}`. Its last checkpoint (step {step}) is kept: `/resume {run}` "
                                "continues from it.",
                                "正在取消 `{run}`。其最后的检查点（第 {step} 步）已保留：`/resume {run}` 可从此继续。"),
    "reply.autotrain.refused": ("`{path}` changed, but training was not started: {reason}",
                                "`{path}` 已修改，但未开始训练：{reason}"),
    "reply.autotrain.config_error": ("⚠️ {error}", "⚠️ {error}"),
    "reply.policy_error": ("⚠️ {error}", "⚠️ {error}"),
    "reply.delivery_failed": (
        "⚠️ @{actor} your command could not be carried out after {attempts} attempts: {error}. Nothing was "
        "started. Comment it again in a few minutes (GitHub's status: https://www.githubstatus.com); if it keeps "
        "failing, ask the bot's operator to look at webhook delivery `{delivery}`.",
        "⚠️ @{actor} 您的命令在尝试 {attempts} 次后仍未能执行：{error}。没有启动任何任务。请过几分钟再评论一次"
        "（GitHub 状态：https://www.githubstatus.com）；如果一直失败，"
        "请联系机器人的运维人员检查 webhook 投递 `{delivery}`。"),
    "reply.dispatch_failed.workflow_missing": (
        "❌ `{run}` could not start: GitHub has no workflow `{workflow}` on the default branch `{ref}` of this "
        "repository ({error}). Add `.github/workflows/{workflow}` (deploy/github/tunebot-run.yml) to `{ref}`, then "
        "`/retry {run}`.",
        "❌ `{run}` 无法启动：本仓库默认分支 `{ref}` 上没有工作流 `{workflow}`（{error}）。请把 "
        "`.github/workflows/{workflow}`（deploy/github/tunebot-run.yml）加入 `{ref}`，然后评论 `/retry {run}`。"),
    "reply.dispatch_failed.rejected": (
        "❌ `{run}` could not start: GitHub refused to dispatch workflow `{workflow}` on `{ref}` ({error}). Check "
        "that `.github/workflows/{workflow}` on `{ref}` is tunebot's (deploy/github/tunebot-run.yml) with its "
        "inputs, then `/retry {run}`.",
        "❌ `{run}` 无法启动：GitHub 拒绝在 `{ref}` 上触发工作流 `{workflow}`（{error}）。请确认 `{ref}` 上的 "
        "`.github/workflows/{workflow}` 是 tunebot 的工作流（deploy/github/tunebot-run.yml）并声明了其输入，"
        "然后评论 `/retry {run}`。"),
    "reply.dispatch_failed.forbidden": (
        "❌ `{run}` could not start: GitHub refused to dispatch workflow `{workflow}` ({error}). The App needs the "
        "`actions: write` permission: an owner of the repository accepts it in the App's installation settings "
        "(Settings → GitHub Apps → Configure); then `/retry {run}`.",
        "❌ `{run}` 无法启动：GitHub 拒绝触发工作流 `{workflow}`（{error}）。App 需要 `actions: write` 权限："
        "请仓库所有者在 App 的安装设置中（Settings → GitHub Apps → Configure）批准该权限，然后评论 `/retry {run}`。"),
    # leaderboard
    "lb.title": ("Leaderboard: {bench}", "排行榜：{bench}"),
    "lb.title_all": ("Leaderboard", "排行榜"),
    "lb.empty": ("No stored results yet.", "还没有已保存的评测结果。"),
    "lb.empty_bench": ("No stored results for {bench} yet.", "还没有 {bench} 的评测结果。"),
    "lb.col.rank": ("#", "排名"),
    "lb.col.model": ("Model", "模型"),
    "lb.col.adapter": ("Adapter / run", "适配器 / 运行"),
    "lb.col.score": ("Score", "得分"),
    "lb.col.ci": ("95% CI", "95% 置信区间"),
    "lb.col.n": ("n", "题数"),
    "lb.col.date": ("Date", "日期"),
    "lb.base_model": ("(base model)", "（基座模型）"),
    "lb.more": ("… {more} more not shown", "……另有 {more} 条未显示"),
    "lb.note": ("Scores with overlapping intervals are not reliably different.",
                "置信区间重叠的成绩之间没有可靠差异。"),
    # the scheduled leaderboard (`tunebot runs leaderboard`): issue comment, Slack message, why a run is not ranked
    "lb.ranked": ("{n} models ranked", "{n} 个模型参与排名"),
    "lb.ranked_one": ("1 model ranked", "1 个模型参与排名"),
    "lb.workflow": ("workflow run", "工作流运行"),
    "lb.none": ("No results in this run.", "本次运行没有可用的评测结果。"),
    "lb.missing": ("No result for {bench} in this run.", "本次运行没有 {bench} 的结果。"),
    "lb.skipped": ("Not ranked ({n})", "未参与排名（{n}）"),
    "lb.skipped_more": ("… and {n} more", "……另有 {n} 条"),
    "lb.full": ("full ranking", "完整排名"),
    "lb.slack_skipped": ("{n} not ranked", "{n} 项未参与排名"),
    "lb.why.partial": ("partial results (a benchmark failed)", "结果不完整（有基准评测失败）"),
    "lb.why.unfinished": ("did not finish (no results.json; the job may have timed out or been cancelled)",
                          "未完成（没有 results.json，作业可能超时或被取消）"),
    "lb.why.unreadable": ("unreadable results.json", "无法读取 results.json"),
    "lb.why.no_model": ("results.json names no model (manifest.model.name)",
                        "results.json 中没有模型名（manifest.model.name）"),
    "lb.why.no_bench": ("no {bench} score", "没有 {bench} 成绩"),
    "lb.why.no_questions": ("{bench}: no questions were scored", "{bench}：没有评分的题目"),
    "lb.why.bad_score": ("{bench}: malformed score ({detail})", "{bench}：成绩格式错误（{detail}）"),
    "lb.why.superseded": ("{bench}: an older result (finished {when}); the newer one is ranked",
                          "{bench}：较早的结果（完成于 {when}），已采用较新的结果"),
    # milestones (Slack thread replies, DingTalk text)
    "ms.queued": ("⏳ Run {run} queued: {command}", "⏳ 运行 {run} 已排队：{command}"),
    "ms.dispatched": ("📤 Run {run} dispatched to a runner", "📤 运行 {run} 已派发给运行器"),
    "ms.started": ("▶️ Run {run} started on {model}", "▶️ 运行 {run} 已开始（{model}）"),
    "ms.phase": ("🔄 Run {run}: {phase}", "🔄 运行 {run}：{phase}"),
    "ms.progress": ("🔄 Run {run}: {percent}% (step {step}/{total})",
                    "🔄 运行 {run}：{percent}%（第 {step}/{total} 步）"),
    "ms.scores": ("📊 Run {run} scores: {scores}", "📊 运行 {run} 成绩：{scores}"),
    "ms.succeeded": ("✅ Run {run} succeeded in {d}", "✅ 运行 {run} 已完成，用时 {d}"),
    "ms.failed": ("❌ Run {run} failed: {reason}", "❌ 运行 {run} 失败：{reason}"),
    "ms.cancelled": ("🚫 Run {run} cancelled: {reason}", "🚫 运行 {run} 已取消：{reason}"),
    "ms.unknown_reason": ("no reason given", "未说明原因"),
    "ms.view": ("View run", "查看运行"),
    "ms.view_report": ("View report", "查看报告"),
    # check run
    "check.title": ("{conclusion}: {headline}", "{conclusion}：{headline}"),
    "check.truncated": ("*(truncated; the full report is in the pull-request comment)*",
                        "*（内容过长已截断，完整报告见 PR 评论）*"),
    "split.omitted": ("*({k} more parts omitted; see the artifacts for the full report)*",
                      "*（另有 {k} 部分未显示，完整报告见产物）*"),
}


def t(language: Language, key: str, **values: object) -> str:
    """The phrase for `key` in `language`, with the placeholders filled in."""
    en, zh = _MESSAGES[key]
    text = zh if language == "zh" else en
    return text.format(**values) if values else text
