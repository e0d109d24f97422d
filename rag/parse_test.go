package rag

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// minimalPDF writes a one-page PDF by hand: catalog, pages, page, a content
// stream drawing text with Helvetica, the font, an Info dictionary, and a
// cross-reference table whose offsets are computed from the bytes written.
func minimalPDF(title, text string) []byte {
	stream := fmt.Sprintf("BT /F1 12 Tf 72 720 Td (%s) Tj ET", text)
	objects := []string{
		"<< /Type /Catalog /Pages 2 0 R >>",
		"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
		"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
		fmt.Sprintf("<< /Length %d >>\nstream\n%s\nendstream", len(stream), stream),
		"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
		fmt.Sprintf("<< /Title (%s) >>", title),
	}
	var b bytes.Buffer
	b.WriteString("%PDF-1.4\n")
	offsets := make([]int, len(objects))
	for i, o := range objects {
		offsets[i] = b.Len()
		fmt.Fprintf(&b, "%d 0 obj\n%s\nendobj\n", i+1, o)
	}
	xref := b.Len()
	fmt.Fprintf(&b, "xref\n0 %d\n0000000000 65535 f \n", len(objects)+1)
	for _, off := range offsets {
		fmt.Fprintf(&b, "%010d 00000 n \n", off)
	}
	fmt.Fprintf(&b, "trailer\n<< /Size %d /Root 1 0 R /Info 6 0 R >>\nstartxref\n%d\n%%%%EOF\n", len(objects)+1, xref)
	return b.Bytes()
}

func TestDetectContentType(t *testing.T) {
	tests := []struct {
		name, contentType, filename string
		data                        string
		want                        string
		wantErr                     bool
	}{
		{"explicit with charset", "text/html; charset=utf-8", "x.md", "hello", ContentTypeHTML, false},
		{"explicit short name", "markdown", "", "hello", ContentTypeMarkdown, false},
		{"explicit unsupported", "image/png", "", "hello", "", true},
		{"extension", "", "Guide.MD", "hello", ContentTypeMarkdown, false},
		{"unsupported extension", "", "a.docx", "hello", "", true},
		{"sniff pdf", "", "", "%PDF-1.4 ...", ContentTypePDF, false},
		{"sniff json", "", "", ` {"a": 1}`, ContentTypeJSON, false},
		{"sniff html", "", "", "<!DOCTYPE html><html><body>x</body></html>", ContentTypeHTML, false},
		{"sniff markdown heading", "", "", "intro\n# Title\ntext", ContentTypeMarkdown, false},
		{"sniff plain text", "", "", "just words [not json", ContentTypeText, false},
		{"sniff binary", "", "", "\x00\x01\x02\xff\xfe", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DetectContentType(tt.contentType, tt.filename, []byte(tt.data))
			if tt.wantErr {
				if !errors.Is(err, ErrUnsupportedContentType) {
					t.Fatalf("err = %v, want ErrUnsupportedContentType", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	_, err := DetectContentType("image/png", "", nil)
	if err == nil || !strings.Contains(err.Error(), "image/png") {
		t.Errorf("error %v should name the content type", err)
	}
}

func TestParseMarkdownHeadingPaths(t *testing.T) {
	src := "Intro text.\n# Guide\nWelcome.\n## Install\nRun `go install`. See [docs](http://x).\n```\n# not a heading\n```\n### Linux\napt\n## Usage\nuse it\n# Other\nbye\n"
	p, err := Parse(ContentTypeMarkdown, []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if p.Title != "Guide" {
		t.Errorf("title %q, want Guide", p.Title)
	}
	var paths []string
	for _, s := range p.Sections {
		paths = append(paths, HeadingPathString(s.HeadingPath))
	}
	want := []string{"", "Guide", "Guide > Install", "Guide > Install > Linux", "Guide > Usage", "Other"}
	if diff := cmp.Diff(want, paths); diff != "" {
		t.Errorf("heading paths (-want +got):\n%s", diff)
	}
	install := p.Sections[2].Text
	if !strings.Contains(install, "# not a heading") || !strings.Contains(install, "See docs.") || strings.Contains(install, "http://x") {
		t.Errorf("install section text wrong: %q", install)
	}
}

func TestParseHTML(t *testing.T) {
	src := `<!doctype html><html><head><title>My Page</title><style>.a{color:red}</style>
<script>var secret = "script text";</script></head><body>
<nav><a href="/">Home nav link</a></nav>
<h1>Guide</h1><p>Welcome <b>friend</b>.</p>
<h2>Install</h2><p>Run the installer.</p><script>alert("x")</script>
<h2>Usage</h2><ul><li>one</li><li>two</li></ul></body></html>`
	p, err := Parse(ContentTypeHTML, []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if p.Title != "My Page" {
		t.Errorf("title %q", p.Title)
	}
	all := p.Text()
	for _, noise := range []string{"script text", "color:red", "Home nav link", "alert"} {
		if strings.Contains(all, noise) {
			t.Errorf("noise %q kept in %q", noise, all)
		}
	}
	want := []Section{
		{HeadingPath: []string{"Guide"}, Text: "Guide\nWelcome friend."},
		{HeadingPath: []string{"Guide", "Install"}, Text: "Install\nRun the installer."},
		{HeadingPath: []string{"Guide", "Usage"}, Text: "Usage\none\ntwo"},
	}
	if diff := cmp.Diff(want, p.Sections); diff != "" {
		t.Errorf("sections (-want +got):\n%s", diff)
	}
	p, err = Parse(ContentTypeHTML, []byte("<h1>Only heading title</h1><p>x</p>"))
	if err != nil || p.Title != "Only heading title" {
		t.Errorf("title from h1: %q, %v", p.Title, err)
	}
}

func TestParsePDF(t *testing.T) {
	p, err := Parse(ContentTypePDF, minimalPDF("Tiny Doc", "Hello from a tiny PDF"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Title != "Tiny Doc" {
		t.Errorf("title %q, want Tiny Doc", p.Title)
	}
	if got := strings.Join(strings.Fields(p.Text()), " "); !strings.Contains(got, "Hello from a tiny PDF") {
		t.Errorf("text %q does not contain the page text", got)
	}
}

func TestParseCorrupt(t *testing.T) {
	good := minimalPDF("t", "hello")
	tests := []struct {
		name, contentType string
		data              []byte
	}{
		{"truncated pdf", ContentTypePDF, good[:len(good)/2]},
		{"not a pdf", ContentTypePDF, []byte("%PDF-1.4 garbage")},
		{"invalid json", ContentTypeJSON, []byte(`{"a": `)},
		// Regression: fuzzing found the PDF library loops forever on a page
		// tree whose /Kids points back at itself.
		{"pdf with cyclic /Kids", ContentTypePDF, bytes.Replace(good, []byte("/Kids [3 0 R]"), []byte("/Kids [2 0 R]"), 1)},
		{"pdf with cyclic /Parent", ContentTypePDF, bytes.Replace(good, []byte("/Parent 2 0 R"), []byte("/Parent 3 0 R"), 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Parse(tt.contentType, tt.data); !errors.Is(err, ErrCorruptDocument) {
				t.Fatalf("err = %v, want ErrCorruptDocument", err)
			}
		})
	}
}

func TestParseJSONFlattens(t *testing.T) {
	p, err := Parse(ContentTypeJSON, []byte(`{"title":"Menu","items":[{"name":"Soup","price":4.5},{"name":"Tea","vegan":true}],"empty":""}`))
	if err != nil {
		t.Fatal(err)
	}
	want := "items[0].name: Soup\nitems[0].price: 4.5\nitems[1].name: Tea\nitems[1].vegan: true\ntitle: Menu"
	if p.Text() != want || p.Title != "Menu" {
		t.Errorf("got title %q text:\n%s", p.Title, p.Text())
	}
}

func TestParseEmpty(t *testing.T) {
	for _, ct := range []string{ContentTypeText, ContentTypeMarkdown, ContentTypeHTML, ContentTypeJSON} {
		if _, err := Parse(ct, []byte("  \n ")); !errors.Is(err, ErrEmptyDocument) && !errors.Is(err, ErrCorruptDocument) {
			t.Errorf("%s: err %v, want ErrEmptyDocument", ct, err)
		}
	}
	if _, err := Parse(ContentTypeHTML, []byte("<script>x()</script>")); !errors.Is(err, ErrEmptyDocument) {
		t.Errorf("script-only html: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("# a\n## b\ntext"), uint8(1))
	f.Add([]byte("<h1>x</h1><p>y<script>z</script>"), uint8(2))
	f.Add(minimalPDF("t", "hello"), uint8(3))
	f.Add([]byte(`{"a":[1,"b",{"c":null}]}`), uint8(4))
	types := []string{ContentTypeText, ContentTypeMarkdown, ContentTypeHTML, ContentTypePDF, ContentTypeJSON}
	f.Fuzz(func(t *testing.T, data []byte, which uint8) {
		p, err := Parse(types[int(which)%len(types)], data)
		if err != nil {
			return
		}
		chunks, err := ChunkSections("d", p.Sections, ChunkOptions{50, 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(chunks) == 0 {
			t.Fatalf("parsed non-empty document gave no chunks")
		}
	})
}

// TestParseCorruptPDFHidesLibraryErrors: the PDF library's panics and errors ("runtime error:
// slice bounds out of range…", "loading {1 0}: found {0 0}") reached the client. The error now
// says the PDF is corrupt, and keeps the library's text only as the cause for the logs.
func TestParseCorruptPDFHidesLibraryErrors(t *testing.T) {
	good := minimalPDF("t", "hello")
	panics := append([]byte(nil), good...)
	panics[9] = '0' // "1 0 obj" → "0 0 obj": the library panics looking up object 1
	tests := []struct {
		name string
		data []byte
	}{
		{"library panics", panics},
		{"library error", good[:len(good)/2]},
		{"not a pdf", []byte("%PDF-1.4 garbage")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(ContentTypePDF, tt.data)
			if !errors.Is(err, ErrCorruptDocument) {
				t.Fatalf("err = %v, want ErrCorruptDocument", err)
			}
			msg := err.Error()
			for _, internal := range []string{"runtime error", "loading", "found", "panic", "malformed", "offset"} {
				if strings.Contains(msg, internal) {
					t.Errorf("message %q shows the library's %q", msg, internal)
				}
			}
			if !strings.Contains(msg, "PDF is damaged") {
				t.Errorf("message %q does not say the PDF is corrupt", msg)
			}
			var ce interface{ Cause() error }
			if !errors.As(err, &ce) || ce.Cause() == nil {
				t.Errorf("no cause kept for the logs: %v", err)
			}
		})
	}
	// Through the ingester the message names the document.
	in := NewIngester(nil, nil, IngesterOptions{})
	_, err := in.Ingest(context.Background(), "acme", Document{ID: "report-q3", Data: panics, Filename: "report.pdf"})
	if !errors.Is(err, ErrCorruptDocument) || !strings.HasPrefix(err.Error(), "document report-q3 (application/pdf): corrupt document: the PDF is damaged") {
		t.Fatalf("ingest: %v", err)
	}
}
