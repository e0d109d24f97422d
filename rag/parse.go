package rag

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/PuerkitoBio/goquery"
	"github.com/ledongthuc/pdf"
	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// Content types the parsers understand (canonical media types).
const (
	ContentTypeText     = "text/plain"
	ContentTypeMarkdown = "text/markdown"
	ContentTypeHTML     = "text/html"
	ContentTypePDF      = "application/pdf"
	ContentTypeJSON     = "application/json"
)

var (
	// ErrUnsupportedContentType is wrapped with the offending type's name.
	ErrUnsupportedContentType = errors.New("unsupported content type")
	// ErrCorruptDocument is wrapped when a document of a supported type
	// cannot be parsed (a broken PDF, invalid JSON).
	ErrCorruptDocument = errors.New("corrupt document")
	// ErrEmptyDocument means the document has no text to index (docs/api.md:
	// whitespace-only text is 400 invalid_request).
	ErrEmptyDocument = errors.New("document has no text")
)

var mediaAliases = map[string]string{
	"text/plain":            ContentTypeText,
	"text/markdown":         ContentTypeMarkdown,
	"text/x-markdown":       ContentTypeMarkdown,
	"text/html":             ContentTypeHTML,
	"application/xhtml+xml": ContentTypeHTML,
	"application/pdf":       ContentTypePDF,
	"application/json":      ContentTypeJSON,
	"text/json":             ContentTypeJSON,
	"application/ld+json":   ContentTypeJSON,
	// Short names a JSON client may send in "contentType".
	"text":     ContentTypeText,
	"markdown": ContentTypeMarkdown,
	"md":       ContentTypeMarkdown,
	"html":     ContentTypeHTML,
	"pdf":      ContentTypePDF,
	"json":     ContentTypeJSON,
}

var extTypes = map[string]string{
	".txt": ContentTypeText, ".text": ContentTypeText, ".log": ContentTypeText, ".csv": ContentTypeText,
	".md": ContentTypeMarkdown, ".markdown": ContentTypeMarkdown, ".mdx": ContentTypeMarkdown,
	".html": ContentTypeHTML, ".htm": ContentTypeHTML, ".xhtml": ContentTypeHTML,
	".pdf":  ContentTypePDF,
	".json": ContentTypeJSON,
}

var mdHeadingLine = regexp.MustCompile(`(?m)^ {0,3}#{1,6}[ \t]+\S`)

// DetectContentType picks the parser: an explicit content type wins (parsed
// with mime.ParseMediaType, so parameters like charset are ignored), then the
// file name's extension, then sniffing the bytes. An explicit type or
// extension we cannot parse is an ErrUnsupportedContentType naming it;
// sniffing falls back to plain text for valid UTF-8 and refuses binary.
func DetectContentType(contentType, filename string, data []byte) (string, error) {
	if ct := strings.TrimSpace(contentType); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil {
			mt = strings.ToLower(ct) // bare short names like "md" are not media types
		}
		if canon, ok := mediaAliases[mt]; ok {
			return canon, nil
		}
		return "", fmt.Errorf("%w: %q", ErrUnsupportedContentType, ct)
	}
	if filename != "" {
		ext := strings.ToLower(filepath.Ext(filename))
		if canon, ok := extTypes[ext]; ok {
			return canon, nil
		}
		if ext != "" {
			return "", fmt.Errorf("%w: %q (file %s)", ErrUnsupportedContentType, ext, filename)
		}
	}
	return sniff(data)
}

func sniff(data []byte) (string, error) {
	trimmed := bytes.TrimSpace(data)
	if bytes.HasPrefix(trimmed, []byte("%PDF-")) {
		return ContentTypePDF, nil
	}
	if len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[') && json.Valid(trimmed) {
		return ContentTypeJSON, nil
	}
	detected, _, _ := mime.ParseMediaType(http.DetectContentType(data))
	switch detected {
	case "text/html":
		return ContentTypeHTML, nil
	case "text/plain":
		if mdHeadingLine.Match(data) {
			return ContentTypeMarkdown, nil
		}
		return ContentTypeText, nil
	}
	if utf8.Valid(data) {
		return ContentTypeText, nil
	}
	return "", fmt.Errorf("%w: %q (sniffed)", ErrUnsupportedContentType, detected)
}

// Parsed is a document reduced to text sections.
type Parsed struct {
	ContentType string
	Title       string // from the document itself (<title>, first heading, PDF info); may be empty
	Sections    []Section
}

// Text returns all section text joined by blank lines.
func (p Parsed) Text() string {
	parts := make([]string, 0, len(p.Sections))
	for _, s := range p.Sections {
		parts = append(parts, s.Text)
	}
	return strings.Join(parts, "\n\n")
}

// Parse extracts text from data of the given canonical content type (see
// DetectContentType). It never panics on hostile input.
func Parse(contentType string, data []byte) (p Parsed, err error) {
	p.ContentType = contentType
	switch contentType {
	case ContentTypeText:
		p.Sections = []Section{{Text: string(bytes.ToValidUTF8(data, []byte("\uFFFD")))}}
	case ContentTypeMarkdown:
		p.Title, p.Sections = parseMarkdown(string(bytes.ToValidUTF8(data, []byte("\uFFFD"))))
	case ContentTypeHTML:
		p.Title, p.Sections, err = parseHTML(data)
	case ContentTypePDF:
		p.Title, p.Sections, err = parsePDF(data)
	case ContentTypeJSON:
		p.Title, p.Sections, err = parseJSON(data)
	default:
		return p, fmt.Errorf("%w: %q", ErrUnsupportedContentType, contentType)
	}
	if err != nil {
		return p, err
	}
	nonEmpty := p.Sections[:0]
	for _, s := range p.Sections {
		if strings.TrimSpace(s.Text) != "" {
			nonEmpty = append(nonEmpty, s)
		}
	}
	p.Sections = nonEmpty
	if len(p.Sections) == 0 {
		return p, ErrEmptyDocument
	}
	return p, nil
}

var (
	mdATX      = regexp.MustCompile(`^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$`)
	mdFence    = regexp.MustCompile("^ {0,3}(```|~~~)")
	mdLink     = regexp.MustCompile(`!?\[([^\]]*)\]\([^)]*\)`)
	spaceRunRe = regexp.MustCompile(`[ \t\f\v\r]+`)
)

// headingStack tracks the path of headings above the current position.
type headingStack struct {
	levels []int
	titles []string
}

func (h *headingStack) push(level int, title string) []string {
	for len(h.levels) > 0 && h.levels[len(h.levels)-1] >= level {
		h.levels = h.levels[:len(h.levels)-1]
		h.titles = h.titles[:len(h.titles)-1]
	}
	h.levels = append(h.levels, level)
	h.titles = append(h.titles, title)
	return append([]string(nil), h.titles...)
}

// parseMarkdown splits at ATX headings (# … ######) outside fenced code
// blocks; each section starts with its heading's text so keyword search sees
// it. Setext headings (underlined) are treated as text. Links and images
// keep their text and drop the URL.
func parseMarkdown(src string) (string, []Section) {
	var (
		title    string
		sections []Section
		stack    headingStack
		path     []string
		body     strings.Builder
		inFence  string
	)
	flush := func() {
		sections = append(sections, Section{HeadingPath: path, Text: strings.TrimSpace(body.String())})
		body.Reset()
	}
	for _, line := range strings.Split(src, "\n") {
		if m := mdFence.FindStringSubmatch(line); m != nil {
			switch inFence {
			case "":
				inFence = m[1]
			case m[1]:
				inFence = ""
			}
		} else if inFence == "" {
			if m := mdATX.FindStringSubmatch(line); m != nil {
				flush()
				heading := strings.TrimSpace(mdLink.ReplaceAllString(m[2], "$1"))
				path = stack.push(len(m[1]), heading)
				if title == "" && len(m[1]) == 1 {
					title = heading
				}
				body.WriteString(heading)
				body.WriteString("\n")
				continue
			}
			line = mdLink.ReplaceAllString(line, "$1")
		}
		body.WriteString(line)
		body.WriteString("\n")
	}
	flush()
	return title, sections
}

// htmlNoise are elements whose text is never content.
var htmlNoise = map[atom.Atom]bool{
	atom.Script: true, atom.Style: true, atom.Noscript: true, atom.Nav: true, atom.Template: true,
	atom.Iframe: true, atom.Svg: true, atom.Head: true, atom.Button: true, atom.Select: true, atom.Object: true,
}

var htmlHeadingLevel = map[atom.Atom]int{atom.H1: 1, atom.H2: 2, atom.H3: 3, atom.H4: 4, atom.H5: 5, atom.H6: 6}

var htmlInline = map[atom.Atom]bool{
	atom.A: true, atom.Abbr: true, atom.B: true, atom.Bdi: true, atom.Bdo: true, atom.Cite: true, atom.Code: true,
	atom.Data: true, atom.Dfn: true, atom.Em: true, atom.I: true, atom.Kbd: true, atom.Mark: true, atom.Q: true,
	atom.S: true, atom.Samp: true, atom.Small: true, atom.Span: true, atom.Strong: true, atom.Sub: true,
	atom.Sup: true, atom.Time: true, atom.U: true, atom.Var: true, atom.Wbr: true, atom.Label: true,
}

// parseHTML keeps visible text, drops scripts, styles and navigation, and
// splits at h1–h6 keeping the heading path. Title: <title>, else first <h1>.
func parseHTML(data []byte) (string, []Section, error) {
	doc, err := goquery.NewDocumentFromReader(bytes.NewReader(data))
	if err != nil {
		return "", nil, fmt.Errorf("%w: html: %v", ErrCorruptDocument, err)
	}
	title := collapse(doc.Find("title").First().Text())
	if title == "" {
		title = collapse(doc.Find("h1").First().Text())
	}
	var (
		sections []Section
		stack    headingStack
		path     []string
		body     strings.Builder
	)
	flush := func() {
		sections = append(sections, Section{HeadingPath: path, Text: tidyLines(body.String())})
		body.Reset()
	}
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		switch n.Type {
		case html.TextNode:
			body.WriteString(n.Data)
			return
		case html.ElementNode:
			if htmlNoise[n.DataAtom] {
				return
			}
			if level, ok := htmlHeadingLevel[n.DataAtom]; ok {
				heading := collapse(goquery.NewDocumentFromNode(n).Text())
				if heading != "" {
					flush()
					path = stack.push(level, heading)
					body.WriteString(heading)
					body.WriteString("\n")
					return
				}
			}
		}
		block := n.Type == html.ElementNode && !htmlInline[n.DataAtom]
		if block {
			body.WriteString("\n")
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
		if block {
			body.WriteString("\n")
		}
	}
	for _, n := range doc.Nodes {
		walk(n)
	}
	flush()
	return title, sections, nil
}

func collapse(s string) string { return strings.Join(strings.Fields(s), " ") }

// tidyLines collapses runs of spaces and drops blank lines.
func tidyLines(s string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(spaceRunRe.ReplaceAllString(line, " "))
		if line != "" {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// PDF limits: the PDF library trusts the page tree, so a /Kids or /Parent
// cycle or a huge /Count in a hostile file would loop forever. We walk the
// tree ourselves with these bounds.
const (
	maxPDFPages     = 5000
	maxPDFTreeNodes = 20000
	maxPDFDepth     = 64
	pdfParseTimeout = 30 * time.Second
)

// parsePDF extracts the text of every page. The PDF library panics on some
// malformed input, so a panic becomes ErrCorruptDocument; as a backstop
// against loops we have not bounded, extraction runs in a goroutine and a
// document that takes longer than pdfParseTimeout is refused (the goroutine
// is then abandoned: it holds only this document's memory).
func parsePDF(data []byte) (string, []Section, error) {
	type result struct {
		title    string
		sections []Section
		err      error
	}
	done := make(chan result, 1)
	go func() {
		var res result
		res.title, res.sections, res.err = extractPDF(data)
		done <- res
	}()
	select {
	case res := <-done:
		return res.title, res.sections, res.err
	case <-time.After(pdfParseTimeout):
		return "", nil, fmt.Errorf("%w: pdf: text extraction did not finish in %s", ErrCorruptDocument, pdfParseTimeout)
	}
}

func extractPDF(data []byte) (title string, sections []Section, err error) {
	defer func() {
		if r := recover(); r != nil {
			title, sections, err = "", nil, corruptPDF("", fmt.Errorf("pdf library panicked: %v", r))
		}
	}()
	r, err := pdf.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return "", nil, corruptPDF("", err)
	}
	if info := r.Trailer().Key("Info"); !info.IsNull() {
		title = collapse(info.Key("Title").Text())
	}
	pages, err := pdfPages(r.Trailer().Key("Root").Key("Pages"))
	if err != nil {
		return "", nil, err
	}
	if len(pages) == 0 {
		return "", nil, fmt.Errorf("%w: pdf has no pages", ErrCorruptDocument)
	}
	var parts []string
	for i, page := range pages {
		text, err := page.GetPlainText(nil)
		if err != nil {
			return "", nil, corruptPDF(fmt.Sprintf(" (page %d)", i+1), err)
		}
		parts = append(parts, tidyLines(text))
	}
	return title, []Section{{Text: strings.Join(parts, "\n\n")}}, nil
}

// corruptError is a document the parser could not read. Its message is for the client and says
// only that the document is corrupt (and where, when known); the parser's own error, which is
// about the library's internals ("runtime error: slice bounds out of range [:-1]"), is kept as
// the cause for the logs and never shown.
type corruptError struct {
	msg   string
	cause error
}

func (e *corruptError) Error() string   { return ErrCorruptDocument.Error() + ": " + e.msg }
func (e *corruptError) Unwrap() []error { return []error{ErrCorruptDocument, e.cause} }

// Cause is the parser's own error, for the logs.
func (e *corruptError) Cause() error { return e.cause }

// corruptPDF reports a PDF the library failed on; where is "" or " (page n)".
func corruptPDF(where string, cause error) error {
	return &corruptError{msg: "the PDF is damaged or not a valid PDF; its text cannot be read" + where, cause: cause}
}

// pdfPages walks the page tree depth-first with bounds, and checks each
// page's /Parent chain (the library follows it for inherited resources).
func pdfPages(root pdf.Value) ([]pdf.Page, error) {
	var (
		pages []pdf.Page
		nodes int
	)
	var walk func(v pdf.Value, depth int) error
	walk = func(v pdf.Value, depth int) error {
		nodes++
		if depth > maxPDFDepth || nodes > maxPDFTreeNodes || len(pages) > maxPDFPages {
			return fmt.Errorf("%w: pdf page tree too deep, too large or cyclic", ErrCorruptDocument)
		}
		switch v.Key("Type").Name() {
		case "Pages":
			kids := v.Key("Kids")
			for i := 0; i < kids.Len(); i++ {
				if err := walk(kids.Index(i), depth+1); err != nil {
					return err
				}
			}
		case "Page":
			up := v
			for range maxPDFDepth + 1 {
				up = up.Key("Parent")
				if up.IsNull() {
					pages = append(pages, pdf.Page{V: v})
					return nil
				}
			}
			return fmt.Errorf("%w: pdf page /Parent chain is cyclic", ErrCorruptDocument)
		}
		return nil
	}
	if err := walk(root, 0); err != nil {
		return nil, err
	}
	return pages, nil
}

// parseJSON flattens every string value into a "key.path[i]: value" line, so
// the keys give the values their context in search. Numbers and booleans
// are kept too (they are often the answer: "price: 12").
func parseJSON(data []byte) (string, []Section, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return "", nil, fmt.Errorf("%w: json: %v", ErrCorruptDocument, err)
	}
	var lines []string
	flattenJSON("", v, &lines)
	var title string
	if m, ok := v.(map[string]any); ok {
		for _, k := range []string{"title", "name", "heading"} {
			if s, ok := m[k].(string); ok && strings.TrimSpace(s) != "" {
				title = collapse(s)
				break
			}
		}
	}
	return title, []Section{{Text: strings.Join(lines, "\n")}}, nil
}

func flattenJSON(path string, v any, lines *[]string) {
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys) // deterministic chunks for the same document
		for _, k := range keys {
			p := k
			if path != "" {
				p = path + "." + k
			}
			flattenJSON(p, x[k], lines)
		}
	case []any:
		for i, e := range x {
			flattenJSON(fmt.Sprintf("%s[%d]", path, i), e, lines)
		}
	case string:
		if strings.TrimSpace(x) != "" {
			*lines = append(*lines, labelled(path, x))
		}
	case json.Number:
		*lines = append(*lines, labelled(path, x.String()))
	case bool:
		*lines = append(*lines, labelled(path, fmt.Sprint(x)))
	}
}

func labelled(path, value string) string {
	if path == "" {
		return value
	}
	return path + ": " + value
}
