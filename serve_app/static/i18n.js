// The page's words in each language, and the small helpers that put them on the page.
// Static text carries data-i18n="key" (its text) or data-i18n-placeholder / data-i18n-title;
// text built by scripts calls t(key, vars) and is redrawn on a language change.

export const LANGUAGES = { zh: "中文", en: "English", ja: "日本語" };
const STORAGE_KEY = "tts.language";

export const MESSAGES = {
  en: {
    title: "Kyutai TTS",
    subtitle: "Text to speech, served on every GPU of the cluster",
    language: "Language",
    testModelNote: "Demo model: its weights are random, so the audio is noise. Serve a real checkpoint to hear speech.",
    fakeEngineNote: "Test engine: a scripted fake runs instead of a model, so the audio is silence or a tone. Tests only.",
    speakTitle: "Speak",
    textLabel: "Text",
    textPlaceholder: "Type what should be said…",
    chars: "{n} / {max} characters",
    voiceLabel: "Voice",
    voiceSearch: "Search voices (name, group or language)",
    voiceCount: "{shown} of {total} voices",
    voiceNone: "No voice matches this search.",
    voiceLoading: "Loading voices…",
    voiceDefaultOnly: "The service lists no voice: its default voice will be used.",
    cfgLabel: "Voice adherence (cfg)",
    formatLabel: "Format",
    formatStreams: "Starts playing while it is generated.",
    formatWhole: "Plays once the whole clip is ready.",
    generate: "Generate",
    generating: "Generating… {s} s",
    done: "Done in {s} s",
    download: "Download",
    resultInfo: "{duration} s · {voice} · GPU {gpu} · replica {replica}",
    resultInfoCpu: "{duration} s · {voice} · CPU · replica {replica}",
    wordsTitle: "Words",
    noWords: "No word timestamps came with this audio.",
    gpuTitle: "GPUs and replicas",
    offloadAll: "Offload all",
    offload: "Offload",
    offloading: "Offloading…",
    offloadDone: "Offload asked of {n} replica(s): {results}",
    offloadNone: "No running replica to offload.",
    gpuSummary: "{gpus} GPU(s) on {nodes} node(s) · {replicas} worker replica(s) · deployment {status}",
    gpuName: "GPU {index}",
    noGpu: "No GPU (CPU)",
    vram: "VRAM {used} / {total} GiB",
    vramUnknown: "VRAM: not reported",
    vramUnknownWhy: "No NVIDIA driver reports this GPU (logical GPU, or NVML missing).",
    noReplica: "No replica on this GPU.",
    scaledToZero: "No worker replica is running (scaled to zero). The next request starts one.",
    idle: "idle {t}",
    busy: "busy: {active} running, {queued} queued",
    slots: "slots: {busy} busy · {free} free of {total}",
    updated: "Refreshed every {s} s · last at {time}",
    state_unloaded: "not loaded",
    state_loading: "loading",
    downloading: "Downloading {file}: {pct}% ({done} of {total})",
    downloadRate: "{rate}/s",
    downloadLeft: "about {t} left",
    state_ready: "loaded in VRAM",
    state_ready_cpu: "loaded (CPU)",
    state_offloaded: "offloaded",
    state_failed: "failed",
    apiDocs: "API docs",
    err_empty_text: "Please type some text first.",
    err_text_too_long: "The text is too long: {n} characters, the limit is {max}.",
    err_no_voice: "Please pick a voice.",
    err_unavailable: "The model is unavailable right now. Please try again later. ({detail})",
    err_overloaded: "Every GPU is busy right now. Please try again in {s} seconds.",
    err_timeout: "The server took too long to answer. Please try again.",
    err_network: "The service cannot be reached. Is it running?",
    err_server: "The server could not do this: {detail}",
    err_voices: "The voice list could not be loaded: {detail}",
    err_gpu: "The GPU status could not be read: {detail}",
    err_playback: "The browser could not play this audio ({format}). Try another format.",
    keyTitle: "API key needed",
    keyHint: "This service asks for an API key. It is kept in this browser tab only.",
    keyLabel: "API key",
    keySubmit: "Use this key",
    err_key_refused: "This key was refused. Please check it and try again.",
  },
  zh: {
    title: "Kyutai 语音合成",
    subtitle: "文本转语音，运行在集群的每一块 GPU 上",
    language: "语言",
    testModelNote: "演示模型：权重是随机的，所以生成的音频是噪声。请部署真实模型以听到语音。",
    fakeEngineNote: "测试引擎：运行的是按脚本行事的假引擎而不是模型，所以音频是静音或单音。仅用于测试。",
    speakTitle: "合成语音",
    textLabel: "文本",
    textPlaceholder: "输入要朗读的文字…",
    chars: "{n} / {max} 个字符",
    voiceLabel: "音色",
    voiceSearch: "搜索音色（名称、分组或语言）",
    voiceCount: "显示 {shown} / {total} 个音色",
    voiceNone: "没有符合搜索条件的音色。",
    voiceLoading: "正在加载音色…",
    voiceDefaultOnly: "服务没有列出音色：将使用默认音色。",
    cfgLabel: "音色贴合度 (cfg)",
    formatLabel: "格式",
    formatStreams: "边生成边播放。",
    formatWhole: "整段生成完成后播放。",
    generate: "生成",
    generating: "正在生成… {s} 秒",
    done: "完成，用时 {s} 秒",
    download: "下载",
    resultInfo: "{duration} 秒 · {voice} · GPU {gpu} · 副本 {replica}",
    resultInfoCpu: "{duration} 秒 · {voice} · CPU · 副本 {replica}",
    wordsTitle: "逐词",
    noWords: "这段音频没有附带逐词时间戳。",
    gpuTitle: "GPU 与副本",
    offloadAll: "全部卸载",
    offload: "卸载",
    offloading: "正在卸载…",
    offloadDone: "已请求 {n} 个副本卸载：{results}",
    offloadNone: "没有正在运行的副本可以卸载。",
    gpuSummary: "{nodes} 个节点上共 {gpus} 块 GPU · {replicas} 个工作副本 · 部署状态 {status}",
    gpuName: "GPU {index}",
    noGpu: "无 GPU (CPU)",
    vram: "显存 {used} / {total} GiB",
    vramUnknown: "显存：未报告",
    vramUnknownWhy: "没有 NVIDIA 驱动报告此 GPU（逻辑 GPU，或缺少 NVML）。",
    noReplica: "此 GPU 上没有副本。",
    scaledToZero: "当前没有运行的工作副本（已缩容到零）。下一个请求会启动一个。",
    idle: "空闲 {t}",
    busy: "忙碌：{active} 个进行中，{queued} 个排队",
    slots: "槽位：{busy} 忙 · {free} 空闲（共 {total}）",
    updated: "每 {s} 秒刷新 · 上次 {time}",
    state_unloaded: "未加载",
    state_loading: "加载中",
    downloading: "正在下载 {file}：{pct}%（{done} / {total}）",
    downloadRate: "{rate}/秒",
    downloadLeft: "约剩 {t}",
    state_ready: "已加载到显存",
    state_ready_cpu: "已加载（CPU）",
    state_offloaded: "已卸载",
    state_failed: "加载失败",
    apiDocs: "API 文档",
    err_empty_text: "请先输入文本。",
    err_text_too_long: "文本太长：{n} 个字符，上限为 {max}。",
    err_no_voice: "请选择一个音色。",
    err_unavailable: "模型暂时不可用，请稍后再试。（{detail}）",
    err_overloaded: "所有 GPU 都在忙，请 {s} 秒后再试。",
    err_timeout: "服务器响应超时，请重试。",
    err_network: "无法连接到服务。服务是否在运行？",
    err_server: "服务器无法完成请求：{detail}",
    err_voices: "无法加载音色列表：{detail}",
    err_gpu: "无法读取 GPU 状态：{detail}",
    err_playback: "浏览器无法播放此音频（{format}）。请换一种格式。",
    keyTitle: "需要 API 密钥",
    keyHint: "此服务需要 API 密钥。密钥只保存在当前浏览器标签页中。",
    keyLabel: "API 密钥",
    keySubmit: "使用此密钥",
    err_key_refused: "此密钥被拒绝。请检查后重试。",
  },
  ja: {
    title: "Kyutai 音声合成",
    subtitle: "クラスタのすべての GPU で動くテキスト読み上げ",
    language: "言語",
    testModelNote: "デモ用モデル：重みがランダムなため、音声はノイズになります。音声を聞くには本物のモデルを使ってください。",
    fakeEngineNote: "テスト用エンジン：モデルの代わりにスクリプトで動く偽のエンジンが動いているため、音声は無音か単純な音です。テスト専用です。",
    speakTitle: "読み上げ",
    textLabel: "テキスト",
    textPlaceholder: "読み上げる文章を入力…",
    chars: "{n} / {max} 文字",
    voiceLabel: "声",
    voiceSearch: "声を検索（名前・グループ・言語）",
    voiceCount: "{total} 件中 {shown} 件を表示",
    voiceNone: "検索に一致する声がありません。",
    voiceLoading: "声を読み込み中…",
    voiceDefaultOnly: "声の一覧がありません：サービスの既定の声を使います。",
    cfgLabel: "声への忠実度 (cfg)",
    formatLabel: "形式",
    formatStreams: "生成しながら再生します。",
    formatWhole: "全体の生成が終わってから再生します。",
    generate: "生成",
    generating: "生成中… {s} 秒",
    done: "完了（{s} 秒）",
    download: "ダウンロード",
    resultInfo: "{duration} 秒 · {voice} · GPU {gpu} · レプリカ {replica}",
    resultInfoCpu: "{duration} 秒 · {voice} · CPU · レプリカ {replica}",
    wordsTitle: "単語",
    noWords: "この音声には単語のタイムスタンプがありません。",
    gpuTitle: "GPU とレプリカ",
    offloadAll: "すべてオフロード",
    offload: "オフロード",
    offloading: "オフロード中…",
    offloadDone: "{n} 個のレプリカにオフロードを依頼しました：{results}",
    offloadNone: "オフロードできる稼働中のレプリカがありません。",
    gpuSummary: "{nodes} ノードに GPU {gpus} 基 · ワーカーレプリカ {replicas} 個 · デプロイ状態 {status}",
    gpuName: "GPU {index}",
    noGpu: "GPU なし (CPU)",
    vram: "VRAM {used} / {total} GiB",
    vramUnknown: "VRAM：不明",
    vramUnknownWhy: "この GPU を報告する NVIDIA ドライバがありません（論理 GPU、または NVML なし）。",
    noReplica: "この GPU にはレプリカがありません。",
    scaledToZero: "稼働中のワーカーレプリカはありません（ゼロまで縮小）。次のリクエストで起動します。",
    idle: "アイドル {t}",
    busy: "処理中：実行 {active} 件、待機 {queued} 件",
    slots: "スロット：使用中 {busy} · 空き {free} / {total}",
    updated: "{s} 秒ごとに更新 · 最終 {time}",
    state_unloaded: "未読み込み",
    state_loading: "読み込み中",
    downloading: "{file} をダウンロード中：{pct}%（{done} / {total}）",
    downloadRate: "{rate}/秒",
    downloadLeft: "残り約 {t}",
    state_ready: "VRAM に読み込み済み",
    state_ready_cpu: "読み込み済み（CPU）",
    state_offloaded: "オフロード済み",
    state_failed: "失敗",
    apiDocs: "API ドキュメント",
    err_empty_text: "先にテキストを入力してください。",
    err_text_too_long: "テキストが長すぎます：{n} 文字（上限 {max} 文字）。",
    err_no_voice: "声を選んでください。",
    err_unavailable: "現在モデルを利用できません。しばらくしてから再度お試しください。（{detail}）",
    err_overloaded: "すべての GPU が使用中です。{s} 秒後にもう一度お試しください。",
    err_timeout: "サーバーの応答に時間がかかりすぎました。もう一度お試しください。",
    err_network: "サービスに接続できません。起動していますか？",
    err_server: "サーバーで処理できませんでした：{detail}",
    err_voices: "声の一覧を読み込めませんでした：{detail}",
    err_gpu: "GPU の状態を取得できませんでした：{detail}",
    err_playback: "このブラウザではこの音声（{format}）を再生できません。別の形式をお試しください。",
    keyTitle: "API キーが必要です",
    keyHint: "このサービスには API キーが必要です。キーはこのブラウザのタブにだけ保存されます。",
    keyLabel: "API キー",
    keySubmit: "このキーを使う",
    err_key_refused: "このキーは受け付けられませんでした。確認してもう一度お試しください。",
  },
};

let current = "en";
const listeners = [];

/** The saved choice, else the first of the browser's languages we have, else English. */
export function initialLanguage() {
  const saved = safeStorage("get");
  if (saved && saved in MESSAGES) return saved;
  for (const tag of navigator.languages?.length ? navigator.languages : [navigator.language || ""]) {
    const base = tag.toLowerCase().split("-")[0];
    if (base in MESSAGES) return base;
  }
  return "en";
}

export function language() {
  return current;
}

/** The message `key` in the current language, with {name} placeholders filled from `vars`. */
export function t(key, vars = {}) {
  const text = MESSAGES[current][key] ?? MESSAGES.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (match, name) => (name in vars ? String(vars[name]) : match));
}

/** Switches language, remembers it, rewrites the static text and tells the listeners. */
export function setLanguage(lang) {
  current = lang in MESSAGES ? lang : "en";
  safeStorage("set", current);
  document.documentElement.lang = { zh: "zh-CN", en: "en", ja: "ja" }[current];
  translate(document);
  listeners.forEach((listener) => listener(current));
}

export function onLanguageChange(listener) {
  listeners.push(listener);
}

function translate(root) {
  root.querySelectorAll("[data-i18n]").forEach((el) => (el.textContent = t(el.dataset.i18n)));
  root.querySelectorAll("[data-i18n-placeholder]").forEach((el) => (el.placeholder = t(el.dataset.i18nPlaceholder)));
  root.querySelectorAll("[data-i18n-title]").forEach((el) => (el.title = t(el.dataset.i18nTitle)));
  document.title = t("title");
}

// localStorage throws in some private modes: the page must work without it.
function safeStorage(action, value) {
  try {
    if (action === "get") return window.localStorage.getItem(STORAGE_KEY);
    window.localStorage.setItem(STORAGE_KEY, value);
  } catch {
    return null;
  }
  return null;
}
