// Runs in tests/test_site.py's driver page: opens each of PAGES in an iframe of
// WIDTH x HEIGHT px, waits for Material's scripts (they add the copy buttons), measures
// the layout and writes {page: [problem, ...]} as JSON into <pre id="results">.
// WIDTH, HEIGHT and PAGES are defined before this script.
const word = /[\p{L}\p{N}]/u;

function rects(node, start, end) {
  const range = document.createRange();
  range.setStart(node, start);
  range.setEnd(node, end);
  return Array.from(range.getClientRects()).filter(r => r.width > 0);
}

function textNodes(root) {
  const walker = root.ownerDocument.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  const nodes = [];
  while (walker.nextNode()) nodes.push(walker.currentNode);
  return nodes;
}

function overlaps(a, b) {
  return a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
}

function checkPage(doc) {
  const problems = [];
  const article = doc.querySelector("article") || doc.body;
  for (const node of textNodes(article)) {
    if (node.data.includes("\\|")) problems.push("literal \\| in: " + node.data.trim().slice(0, 80));
  }
  for (const table of article.querySelectorAll("table")) {
    const column = article.getBoundingClientRect();
    const box = table.getBoundingClientRect();
    if (box.right > column.right + 1 || table.scrollWidth > table.parentElement.clientWidth + 1) {
      const head = table.querySelector("tr") ? table.querySelector("tr").textContent : "";
      problems.push(`table ${Math.round(table.scrollWidth)} px wide in a ${Math.round(column.width)} px column: ` + head.trim().replace(/\s+/g, " ").slice(0, 60));
    }
  }
  for (const code of article.querySelectorAll("pre > code")) {
    const first = code.textContent.split("\n")[0].slice(0, 60);
    if (code.scrollWidth > code.clientWidth + 1) {
      problems.push(`code block ${code.scrollWidth} px wide in ${code.clientWidth} px: ${first}`);
    }
    const button = code.parentElement.querySelector("button");
    if (!button) continue;
    const b = button.getBoundingClientRect();
    for (const node of textNodes(code)) {
      if (rects(node, 0, node.data.length).some(r => overlaps(r, b) && node.data.trim())) {
        problems.push("text under the copy button: " + first);
        break;
      }
    }
  }
  for (const code of article.querySelectorAll(":not(pre) > code")) {
    for (const node of textNodes(code)) {
      let top = null;
      for (let i = 0; i < node.data.length; i++) {
        const r = rects(node, i, i + 1)[0];
        if (!r) continue;
        if (top !== null && r.top > top + 2 && word.test(node.data[i]) && word.test(node.data[i - 1] || "")) {
          problems.push("identifier broken across lines: " + node.data.slice(0, i) + "|" + node.data.slice(i));
          break;
        }
        top = r.top;
      }
    }
  }
  return problems;
}

async function main() {
  const results = {};
  for (const page of PAGES) {
    const frame = document.createElement("iframe");
    frame.style.width = WIDTH + "px";
    frame.style.height = HEIGHT + "px";
    const loaded = new Promise(resolve => frame.onload = resolve);
    frame.src = page;
    document.body.appendChild(frame);
    await loaded;
    await new Promise(resolve => setTimeout(resolve, 200));
    try {
      results[page] = checkPage(frame.contentDocument);
    } catch (e) {
      results[page] = ["the check failed: " + e];
    }
    frame.remove();
  }
  const out = document.createElement("pre");
  out.id = "results";
  out.textContent = JSON.stringify(results);
  document.body.appendChild(out);
}
main();
