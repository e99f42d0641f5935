// A small, safe Markdown renderer for the chat (docs/contract.md §9).
// It builds DOM nodes and sets text with textContent only: nothing the model
// writes is ever parsed as HTML, and links are kept only for http(s) and mailto.
"use strict";

(function () {
  const SAFE_LINK = /^(https?:\/\/|mailto:)/i;
  // `code`, **bold**, *italic* / _italic_, [text](url)
  const INLINE = /(`+)([\s\S]*?[^`])\1(?!`)|\*\*([^*]+)\*\*|__([^_]+)__|\*([^*\s][^*]*)\*|\b_([^_\s][^_]*)_\b|\[([^\]]+)\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g;

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function inline(parent, text) {
    let last = 0;
    // A fresh scanner per call: the recursion for bold, italic and link text must not move ours.
    const scanner = new RegExp(INLINE.source, "g");
    for (let match = scanner.exec(text); match; match = scanner.exec(text)) {
      if (match.index > last) parent.appendChild(document.createTextNode(text.slice(last, match.index)));
      if (match[1]) {
        parent.appendChild(el("code", null, match[2]));
      } else if (match[3] || match[4]) {
        inline(parent.appendChild(el("strong")), match[3] || match[4]);
      } else if (match[5] || match[6]) {
        inline(parent.appendChild(el("em")), match[5] || match[6]);
      } else {
        const href = match[8].trim();
        if (SAFE_LINK.test(href)) {
          const link = el("a");
          link.href = href;
          link.rel = "noopener noreferrer nofollow";
          link.target = "_blank";
          inline(link, match[7]);
          parent.appendChild(link);
        } else {
          parent.appendChild(document.createTextNode(match[0]));
        }
      }
      last = scanner.lastIndex;
    }
    if (last < text.length) parent.appendChild(document.createTextNode(text.slice(last)));
  }

  function copyButton(code) {
    const button = el("button", "code-copy", "Copy");
    button.type = "button";
    button.addEventListener("click", () => {
      const done = () => { button.textContent = "Copied"; };
      const text = code.textContent;
      const fallback = () => {
        const area = el("textarea");
        area.value = text;
        document.body.appendChild(area);
        area.select();
        document.execCommand("copy");
        area.remove();
        done();
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done, fallback);
      } else {
        fallback();
      }
      window.setTimeout(() => { button.textContent = "Copy"; }, 2000);
    });
    return button;
  }

  function codeBlock(language, lines) {
    const box = el("div", "code-block");
    const head = el("div", "code-head");
    head.appendChild(el("span", "code-lang", language || "code"));
    const pre = el("pre");
    const code = el("code", null, lines.join("\n"));
    pre.appendChild(code);
    head.appendChild(copyButton(code));
    box.appendChild(head);
    box.appendChild(pre);
    return box;
  }

  function paragraph(lines) {
    const p = el("p");
    lines.forEach((line, index) => {
      if (index) p.appendChild(el("br"));
      inline(p, line);
    });
    return p;
  }

  const FENCE = /^\s*(```|~~~)\s*([\w+#.-]*)\s*$/;
  const HEADING = /^(#{1,6})\s+(.*)$/;
  const BULLET = /^\s*[-*+]\s+(.*)$/;
  const NUMBER = /^\s*(\d{1,9})[.)]\s+(.*)$/;
  const QUOTE = /^\s*>\s?(.*)$/;
  const RULE = /^\s*([-*_])(\s*\1){2,}\s*$/;
  const ALIGN_CELL = /^\s*(:?)-{3,}(:?)\s*$/;

  // A table row's cells: the outer pipes dropped, split on the others (no regex over the whole line).
  function cells(line) {
    let text = line.trim();
    if (text.startsWith("|")) text = text.slice(1);
    if (text.endsWith("|")) text = text.slice(0, -1);
    return text.split("|").map((cell) => cell.trim());
  }

  // A header row with a pipe, then a separator row like |---|:---:| with as many cells.
  function tableStart(lines, i) {
    if (i + 1 >= lines.length || !lines[i].includes("|")) return null;
    const head = cells(lines[i]);
    const rule = cells(lines[i + 1]);
    if (rule.length !== head.length || !rule.every((cell) => ALIGN_CELL.test(cell))) return null;
    return {
      head,
      align: rule.map((cell) => {
        const match = ALIGN_CELL.exec(cell);
        return match[1] && match[2] ? "center" : match[2] ? "right" : "";
      }),
    };
  }

  function table(start, lines, i) {
    const scroll = el("div", "md-table");
    scroll.tabIndex = 0; // a wide table scrolls in its box, by keyboard too
    scroll.setAttribute("role", "region");
    scroll.setAttribute("aria-label", "Table");
    const grid = scroll.appendChild(el("table"));
    const row = grid.appendChild(el("thead")).appendChild(el("tr"));
    const cell = (parent, tag, text, index) => {
      const node = parent.appendChild(el(tag, start.align[index] ? "align-" + start.align[index] : null));
      if (tag === "th") node.scope = "col";
      inline(node, text || "");
    };
    start.head.forEach((text, index) => cell(row, "th", text, index));
    const body = grid.appendChild(el("tbody"));
    while (i < lines.length && lines[i].trim() && lines[i].includes("|")) {
      const tr = body.appendChild(el("tr"));
      const values = cells(lines[i]);
      start.head.forEach((_, index) => cell(tr, "td", values[index], index));
      i += 1;
    }
    return [scroll, i];
  }

  function blocks(lines, into) {
    let i = 0;
    while (i < lines.length) {
      const line = lines[i];
      let match;
      if (!line.trim()) { i += 1; continue; }
      const start = tableStart(lines, i);
      if (start) {
        const [node, next] = table(start, lines, i + 2);
        into.appendChild(node);
        i = next;
      } else if ((match = FENCE.exec(line))) {
        const body = [];
        i += 1;
        // An unclosed fence (an answer still streaming) runs to the end.
        while (i < lines.length && !(FENCE.exec(lines[i]) && FENCE.exec(lines[i])[1] === match[1] && !FENCE.exec(lines[i])[2])) {
          body.push(lines[i]);
          i += 1;
        }
        i += 1;
        into.appendChild(codeBlock(match[2], body));
      } else if ((match = HEADING.exec(line))) {
        inline(into.appendChild(el("h" + Math.min(match[1].length + 2, 6))), match[2]);
        i += 1;
      } else if (RULE.test(line)) {
        into.appendChild(el("hr"));
        i += 1;
      } else if (QUOTE.test(line)) {
        const body = [];
        while (i < lines.length && (match = QUOTE.exec(lines[i]))) { body.push(match[1]); i += 1; }
        blocks(body, into.appendChild(el("blockquote")));
      } else if (BULLET.test(line) || NUMBER.test(line)) {
        const ordered = !BULLET.test(line);
        const list = into.appendChild(el(ordered ? "ol" : "ul"));
        const pattern = ordered ? NUMBER : BULLET;
        if (ordered) list.start = Number(NUMBER.exec(line)[1]);
        while (i < lines.length && (match = pattern.exec(lines[i]))) {
          inline(list.appendChild(el("li")), ordered ? match[2] : match[1]);
          i += 1;
        }
      } else {
        const body = [];
        while (i < lines.length && lines[i].trim() && !FENCE.test(lines[i]) && !HEADING.test(lines[i]) &&
               !(body.length && (BULLET.test(lines[i]) || QUOTE.test(lines[i]) || tableStart(lines, i)))) {
          body.push(lines[i]);
          i += 1;
        }
        into.appendChild(paragraph(body));
      }
    }
    return into;
  }

  /** Render Markdown ``text`` into a new element (a div of DOM nodes; no HTML parsing). */
  function renderMarkdown(text) {
    return blocks(String(text).replace(/\r\n?/g, "\n").split("\n"), el("div", "markdown"));
  }

  window.renderMarkdown = renderMarkdown;
})();
