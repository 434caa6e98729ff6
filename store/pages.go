package store

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"os"
)

// bbolt's on-disk layout, as the page walk below reads it (the field order
// of bbolt's internal/common page.go, meta.go and bucket.go; integers in
// the machine's byte order, as bbolt writes them).
const (
	pageHeaderSize  = 16 // id uint64, flags uint16, count uint16, overflow uint32
	pageElementSize = 16 // branch: pos, ksize uint32, pgid uint64; leaf: flags, pos, ksize, vsize uint32
	bucketHeader    = 16 // a bucket's value: root pgid, sequence uint64 (then the inline page when root is 0)

	branchPage   = 0x01
	leafPage     = 0x02
	metaPage     = 0x04
	freelistPage = 0x10

	bucketLeafFlag = 0x01

	boltVersion = 2
	metaSize    = 64 // magic, version, pageSize, flags uint32; root, sequence, freelist, pgid, txid, checksum uint64
	noFreelist  = ^uint64(0)

	// maxTreeDepth bounds the walk: bucket trees nested in bucket trees,
	// each a few branch levels deep. The station nests one level (the
	// audit log's records), so a real database stays far below it.
	maxTreeDepth = 64
)

var ne = binary.NativeEndian

// pageWalk reads a bbolt file page by page (mapped read-only), never
// writing it.
type pageWalk struct {
	f    *os.File
	path string // for errors: the database's path
	ps   int
	hwm  uint64 // the meta's high-water mark: every page id is below it
	seen []bool // pages reached from the meta (tree, overflow, freelist)
	data []byte // the file's hwm pages, mapped read-only
}

// checkPages walks every page of the database at db's file that the
// newest valid meta page reaches, without bbolt and without writing: each
// page id below the high-water mark, each page's header naming itself and
// being the kind its parent expects, each element inside its page, no page
// reached twice (a cycle or a shared page in a corrupt tree, on which
// bbolt's cursor loops forever), no page both in use and free, and the
// nesting bounded. A failure is an *Error wrapping ErrDamaged naming the
// page.
func (db *DB) checkPages() error {
	f, err := os.Open(db.DB.Path())
	if err != nil {
		return fmt.Errorf("opening the station database: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("opening the station database: %w", err)
	}
	w := &pageWalk{f: f, path: db.path, ps: db.Info().PageSize}
	// Mapped rather than read: the walk touches every page of the file
	// once, and a copy of each costs more than the checks. A fault (the
	// file cut short meanwhile) is ErrDamaged through guard.
	return guard(db.path, func() error { return w.check(st.Size()) })
}

func (w *pageWalk) damaged(format string, a ...any) error {
	return &Error{Path: w.path, Err: ErrDamaged, Detail: fmt.Sprintf(format, a...)}
}

func (w *pageWalk) check(size int64) error {
	if w.ps < 1024 || w.ps > 1<<16 {
		return w.damaged("page size %d", w.ps)
	}
	root, freelist, err := w.meta()
	if err != nil {
		return err
	}
	if w.hwm < 3 {
		return w.damaged("the meta page's high-water mark is %d pages", w.hwm)
	}
	if w.hwm > uint64(size)/uint64(w.ps) {
		return w.damaged("truncated: its pages need %d bytes, the file holds %d", w.hwm*uint64(w.ps), size)
	}
	data, unmap, err := mapPages(w.f, int(w.hwm)*w.ps)
	if err != nil {
		return fmt.Errorf("reading the station database %s: %w", w.path, err)
	}
	defer unmap()
	w.data = data
	w.seen = make([]bool, w.hwm)
	w.seen[0], w.seen[1] = true, true
	var free []uint64
	if freelist != noFreelist {
		if free, err = w.freelist(freelist); err != nil {
			return err
		}
	}
	if err := w.tree(root, 0); err != nil {
		return err
	}
	for _, id := range free {
		if id < 2 || id >= w.hwm {
			return w.damaged("the freelist (page %d) lists page %d, outside the file's %d pages", freelist, id, w.hwm)
		}
		if w.seen[id] {
			return w.damaged("page %d is both in use and listed as free", id)
		}
	}
	return nil
}

// meta reads both meta pages and keeps, as bbolt does, the valid one with
// the higher transaction ID: its root bucket's page, its freelist's page,
// and its high-water mark (in w.hwm).
func (w *pageWalk) meta() (root, freelist uint64, err error) {
	var best []byte
	var bestTx uint64
	for i := range 2 {
		b := make([]byte, pageHeaderSize+metaSize)
		if _, err := w.f.ReadAt(b, int64(i*w.ps)); err != nil {
			continue
		}
		m := b[pageHeaderSize:]
		if ne.Uint16(b[8:]) != metaPage || ne.Uint32(m[0:]) != boltMagic || ne.Uint32(m[4:]) != boltVersion {
			continue
		}
		h := fnv.New64a()
		h.Write(m[:56])
		if h.Sum64() != ne.Uint64(m[56:]) {
			continue
		}
		if tx := ne.Uint64(m[48:]); best == nil || tx > bestTx {
			best, bestTx = m, tx
		}
	}
	if best == nil {
		return 0, 0, w.damaged("neither meta page is valid")
	}
	w.hwm = ne.Uint64(best[40:])
	return ne.Uint64(best[16:]), ne.Uint64(best[32:]), nil
}

// read returns page id with its overflow pages, after checking its place
// in the file and that it was not reached before.
func (w *pageWalk) read(id uint64, what string) ([]byte, error) {
	if id < 2 || id >= w.hwm {
		return nil, w.damaged("%s points to page %d, outside the file's %d pages", what, id, w.hwm)
	}
	b := w.data[id*uint64(w.ps):]
	if got := ne.Uint64(b); got != id {
		return nil, w.damaged("page %d carries the id %d (%s points to it)", id, got, what)
	}
	over := uint64(ne.Uint32(b[12:]))
	if over >= w.hwm-id {
		return nil, w.damaged("page %d claims %d overflow pages, past the file's %d pages", id, over, w.hwm)
	}
	for p := id; p <= id+over; p++ {
		if w.seen[p] {
			return nil, w.damaged("page %d is reached twice (%s points to it): a cycle or a shared page in the page tree", p, what)
		}
		w.seen[p] = true
	}
	return b[:(over+1)*uint64(w.ps)], nil
}

// freelist returns the page IDs the freelist page lists.
func (w *pageWalk) freelist(id uint64) ([]uint64, error) {
	b, err := w.read(id, "the meta page's freelist")
	if err != nil {
		return nil, err
	}
	if f := ne.Uint16(b[8:]); f != freelistPage {
		return nil, w.damaged("page %d should be the freelist, its flags are %#x", id, f)
	}
	n, start := uint64(ne.Uint16(b[10:])), uint64(pageHeaderSize)
	if n == 0xFFFF { // the count overflows into the first element
		n, start = ne.Uint64(b[pageHeaderSize:]), pageHeaderSize+8
	}
	if n > (uint64(len(b))-start)/8 {
		return nil, w.damaged("the freelist (page %d) claims %d entries, more than its page holds", id, n)
	}
	free := make([]uint64, n)
	for i := range free {
		free[i] = ne.Uint64(b[start+uint64(i)*8:])
	}
	return free, nil
}

// tree walks the bucket tree rooted at page id, d levels down.
func (w *pageWalk) tree(id uint64, d int) error {
	if d > maxTreeDepth {
		return w.damaged("page %d lies more than %d levels deep", id, maxTreeDepth)
	}
	what := "the root bucket"
	if d > 0 {
		what = "a parent page"
	}
	b, err := w.read(id, what)
	if err != nil {
		return err
	}
	switch f := ne.Uint16(b[8:]); f {
	case branchPage:
		n, err := w.elements(b, id)
		if err != nil {
			return err
		}
		if n == 0 {
			return w.damaged("branch page %d has no elements", id)
		}
		for i := range n {
			e := pageHeaderSize + i*pageElementSize
			if err := w.within(b, id, e, ne.Uint32(b[e:]), ne.Uint32(b[e+4:]), 0); err != nil {
				return err
			}
			child := ne.Uint64(b[e+8:])
			if err := w.tree(child, d+1); err != nil {
				return err
			}
		}
		return nil
	case leafPage:
		return w.leaf(b, id, d)
	default:
		return w.damaged("page %d should be a branch or leaf page, its flags are %#x", id, f)
	}
}

// leaf checks the elements of leaf page b (page id, or the inline page of
// a bucket in page id) and walks the buckets it holds.
func (w *pageWalk) leaf(b []byte, id uint64, d int) error {
	n, err := w.elements(b, id)
	if err != nil {
		return err
	}
	for i := range n {
		e := pageHeaderSize + i*pageElementSize
		pos, ks, vs := ne.Uint32(b[e+4:]), ne.Uint32(b[e+8:]), ne.Uint32(b[e+12:])
		if err := w.within(b, id, e, pos, ks, vs); err != nil {
			return err
		}
		if ne.Uint32(b[e:])&bucketLeafFlag == 0 {
			continue
		}
		v := b[e+int(pos)+int(ks) : e+int(pos)+int(ks)+int(vs)]
		if len(v) < bucketHeader {
			return w.damaged("page %d holds a bucket whose header is %d bytes", id, len(v))
		}
		if root := ne.Uint64(v); root != 0 {
			if err := w.tree(root, d+1); err != nil {
				return err
			}
			continue
		}
		in := v[bucketHeader:]
		if len(in) < pageHeaderSize || ne.Uint16(in[8:]) != leafPage {
			return w.damaged("page %d holds an inline bucket that is not a leaf page", id)
		}
		if d+1 > maxTreeDepth {
			return w.damaged("page %d nests buckets more than %d levels deep", id, maxTreeDepth)
		}
		if err := w.leaf(in, id, d+1); err != nil {
			return err
		}
	}
	return nil
}

// elements returns the element count of page b, checking the elements fit.
func (w *pageWalk) elements(b []byte, id uint64) (int, error) {
	n := int(ne.Uint16(b[10:]))
	if pageHeaderSize+n*pageElementSize > len(b) {
		return 0, w.damaged("page %d claims %d elements, more than its %d bytes hold", id, n, len(b))
	}
	return n, nil
}

// within checks that the key and value of the element at offset e of page
// b lie inside the page (positions count from the element).
func (w *pageWalk) within(b []byte, id uint64, e int, pos, ks, vs uint32) error {
	if end := uint64(e) + uint64(pos) + uint64(ks) + uint64(vs); end > uint64(len(b)) {
		return w.damaged("an element of page %d reaches byte %d, past the page's %d bytes", id, end, len(b))
	}
	return nil
}
