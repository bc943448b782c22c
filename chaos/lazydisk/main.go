// lazydisk: a FUSE file system that, like LazyFS, keeps what was written but not yet fsynced
// apart from what was, and on command forgets the former, as a power loss would.
//
//	lazydisk --mount DIR --control SOCKET [--fsname NAME]
//
// Every file and directory lives in this process's memory twice: as the programs on the mount
// see it, and as a disk that lost power would keep it. fsync/fdatasync of a file makes its
// data (and size) durable; fsync of a directory makes its entries durable (a create, rename or
// unlink without one is lost). Files are opened with direct_io and no attribute or entry is
// cached by the kernel, so after a drop nothing of the lost data can be read from the kernel's
// page cache either.
//
// The control socket takes one command per line and answers one JSON object per line:
//
//	ping            {"ok": true}
//	stats           what is unsynced now: bytes, files, directories
//	drop            lose everything unsynced (call it while nothing uses the mount)
//	tear SEED       the same, except that each file's unsynced writes persist in order up to a
//	                random byte of its last write (a torn write; SEED makes it repeatable)
//	sync            make everything durable (as sync(2) would)
//
// SIGTERM or SIGINT unmounts and exits. The mount's source (FsName) names the owner, so
// that `splitbrain clean` can tell a crashed run's mounts from live ones.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand"
	"net"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

type extent struct{ start, end int64 }

type inode struct {
	ino        uint64
	mode       uint32
	uid, gid   uint32
	mtime      time.Time
	ctime      time.Time
	nlookup    uint64
	opens      int
	links      int // entries naming it in visible directories
	durLinks   int // entries naming it in durable directories
	data, dur  []byte
	dirty      []extent // ranges of data that differ from dur
	sizeDirty  bool     // len(data) != len(dur) because of a truncate or growth
	last       extent   // the newest unsynced write
	hasLast    bool
	kids       map[string]*inode
	durKids    map[string]*inode
	dirtyNames bool // kids may differ from durKids
}

func (n *inode) isDir() bool { return n.mode&syscall.S_IFMT == syscall.S_IFDIR }

type handle struct {
	n       *inode
	append  bool
	entries []fuse.DirEntry
}

type lazyFS struct {
	fuse.RawFileSystem
	mu      sync.Mutex
	inodes  map[uint64]*inode
	nextIno uint64
	handles map[uint64]*handle
	nextFh  uint64
}

func newFS() *lazyFS {
	fs := &lazyFS{RawFileSystem: fuse.NewDefaultRawFileSystem(), inodes: map[uint64]*inode{},
		nextIno: 2, handles: map[uint64]*handle{}, nextFh: 1}
	now := time.Now()
	root := &inode{ino: fuse.FUSE_ROOT_ID, mode: syscall.S_IFDIR | 0o755, mtime: now, ctime: now,
		kids: map[string]*inode{}, durKids: map[string]*inode{}, nlookup: 1, links: 1, durLinks: 1}
	fs.inodes[root.ino] = root
	return fs
}

func (fs *lazyFS) String() string { return "lazydisk" }

// -- helpers ----------------------------------------------------------------------------------

func (fs *lazyFS) newInode(mode, uid, gid uint32) *inode {
	now := time.Now()
	n := &inode{ino: fs.nextIno, mode: mode, uid: uid, gid: gid, mtime: now, ctime: now}
	fs.nextIno++
	if n.isDir() {
		n.kids, n.durKids = map[string]*inode{}, map[string]*inode{}
	}
	fs.inodes[n.ino] = n
	return n
}

// collect forgets an inode nothing can reach any more: no kernel reference, no open handle,
// no entry in a visible or a durable directory.
func (fs *lazyFS) collect(n *inode) {
	if n.ino != fuse.FUSE_ROOT_ID && n.nlookup == 0 && n.opens == 0 && n.links == 0 && n.durLinks == 0 {
		delete(fs.inodes, n.ino)
	}
}

func (n *inode) fill(a *fuse.Attr) {
	a.Ino = n.ino
	a.Mode = n.mode
	a.Size = uint64(len(n.data))
	a.Blocks = (a.Size + 511) / 512
	a.Nlink = 1
	if n.isDir() {
		a.Nlink = 2
		a.Size = 4096
		a.Blocks = 8
	}
	a.Uid, a.Gid = n.uid, n.gid
	a.Blksize = 4096
	a.Mtime, a.Mtimensec = uint64(n.mtime.Unix()), uint32(n.mtime.Nanosecond())
	a.Atime, a.Atimensec = a.Mtime, a.Mtimensec
	a.Ctime, a.Ctimensec = uint64(n.ctime.Unix()), uint32(n.ctime.Nanosecond())
}

// entry answers a lookup-like request: the kernel now holds one more reference. Nothing is
// cached by the kernel (timeouts 0): after a drop every name and size is asked again.
func (fs *lazyFS) entry(n *inode, out *fuse.EntryOut) {
	n.nlookup++
	out.NodeId = n.ino
	out.Generation = 1
	out.SetEntryTimeout(0)
	out.SetAttrTimeout(0)
	n.fill(&out.Attr)
}

func (fs *lazyFS) dir(id uint64) (*inode, fuse.Status) {
	n, ok := fs.inodes[id]
	if !ok {
		return nil, fuse.ENOENT
	}
	if !n.isDir() {
		return nil, fuse.ENOTDIR
	}
	return n, fuse.OK
}

func resize(b []byte, n int64) []byte {
	if n <= int64(cap(b)) {
		old := int64(len(b))
		b = b[:n]
		if n > old {
			clear(b[old:n])
		}
		return b
	}
	c := 2 * int64(cap(b))
	if c < n {
		c = n
	}
	nb := make([]byte, n, c)
	copy(nb, b)
	return nb
}

func addExtent(xs []extent, s, e int64) []extent {
	if s >= e {
		return xs
	}
	if k := len(xs); k > 0 && xs[k-1].start <= s && s <= xs[k-1].end { // appends: the usual case
		if e > xs[k-1].end {
			xs[k-1].end = e
		}
		return xs
	}
	out := make([]extent, 0, len(xs)+1)
	merged := extent{s, e}
	placed := false
	for _, x := range xs {
		switch {
		case x.end < merged.start:
			out = append(out, x)
		case x.start > merged.end:
			if !placed {
				out = append(out, merged)
				placed = true
			}
			out = append(out, x)
		default:
			if x.start < merged.start {
				merged.start = x.start
			}
			if x.end > merged.end {
				merged.end = x.end
			}
		}
	}
	if !placed {
		out = append(out, merged)
	}
	return out
}

func (n *inode) unsyncedBytes() int64 {
	var total int64
	for _, x := range n.dirty {
		total += x.end - x.start
	}
	return total
}

func (n *inode) markWritten(s, e int64) {
	n.dirty = addExtent(n.dirty, s, e)
	n.last, n.hasLast = extent{s, e}, true
}

// syncData makes the file's data and size durable (fsync, fdatasync).
func (n *inode) syncData() {
	size := int64(len(n.data))
	if int64(len(n.dur)) < size {
		n.dur = resize(n.dur, size)
	}
	for _, x := range n.dirty {
		end := x.end
		if end > size {
			end = size
		}
		if x.start < end {
			copy(n.dur[x.start:end], n.data[x.start:end])
		}
	}
	n.dur = resize(n.dur, size)
	n.dirty, n.sizeDirty, n.hasLast = nil, false, false
}

// tearData makes the file's unsynced writes durable in place, except the bytes of its last
// write from a random point on: what a disk that lost power in the middle of it may keep.
func (n *inode) tearData(rng *rand.Rand) (kept int64) {
	if !n.hasLast {
		return 0
	}
	cut := n.last.start + rng.Int63n(n.last.end-n.last.start)
	size := int64(len(n.dur))
	var pieces []extent
	for _, x := range n.dirty {
		if x.end > int64(len(n.data)) {
			x.end = int64(len(n.data))
		}
		if x.start < n.last.end && x.end > cut { // the part of it the tear cuts off
			if x.start < cut {
				pieces = append(pieces, extent{x.start, cut})
			}
			if x.end > n.last.end {
				pieces = append(pieces, extent{n.last.end, x.end})
			}
			continue
		}
		if x.start < x.end {
			pieces = append(pieces, x)
		}
	}
	for _, p := range pieces {
		if p.end > size {
			size = p.end
		}
	}
	n.dur = resize(n.dur, size)
	for _, p := range pieces {
		copy(n.dur[p.start:p.end], n.data[p.start:p.end])
		kept += p.end - p.start
	}
	return kept
}

func cloneKids(m map[string]*inode) map[string]*inode {
	c := make(map[string]*inode, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

func sameKids(a, b map[string]*inode) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// -- the control commands ---------------------------------------------------------------------

type report struct {
	OK            bool   `json:"ok"`
	Error         string `json:"error,omitempty"`
	UnsyncedBytes int64  `json:"unsynced_bytes"`
	UnsyncedFiles int    `json:"unsynced_files"`
	UnsyncedDirs  int    `json:"unsynced_dirs"`
	KeptBytes     int64  `json:"kept_bytes,omitempty"` // tear: unsynced bytes that persisted
	Files         int    `json:"files"`
}

func (fs *lazyFS) stats() report {
	r := report{OK: true}
	for _, n := range fs.inodes {
		if n.isDir() {
			if n.dirtyNames && !sameKids(n.kids, n.durKids) {
				r.UnsyncedDirs++
			}
			continue
		}
		if n.links > 0 {
			r.Files++
		}
		if b := n.unsyncedBytes(); b > 0 || n.sizeDirty {
			r.UnsyncedBytes += b
			r.UnsyncedFiles++
		}
	}
	return r
}

// crash replaces what the mount shows by what is durable; with rng, unsynced writes tear.
func (fs *lazyFS) crash(rng *rand.Rand) report {
	r := fs.stats()
	ids := make([]uint64, 0, len(fs.inodes))
	for id := range fs.inodes {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] }) // a seed gives one outcome
	for _, id := range ids {
		n := fs.inodes[id]
		n.links = 0
		if n.isDir() {
			n.kids = cloneKids(n.durKids)
			n.dirtyNames = false
			continue
		}
		if rng != nil {
			r.KeptBytes += n.tearData(rng)
		}
		n.data = append(make([]byte, 0, len(n.dur)), n.dur...)
		n.dirty, n.sizeDirty, n.hasLast = nil, false, false
	}
	fs.inodes[fuse.FUSE_ROOT_ID].links = 1
	for _, id := range ids {
		if n := fs.inodes[id]; n.isDir() {
			for _, kid := range n.kids {
				kid.links++
			}
		}
	}
	for _, id := range ids {
		fs.collect(fs.inodes[id])
	}
	return r
}

func (fs *lazyFS) syncAll() report {
	r := fs.stats()
	for _, n := range fs.inodes {
		if n.isDir() {
			fs.syncDir(n)
		} else {
			n.syncData()
		}
	}
	return r
}

func (fs *lazyFS) syncDir(n *inode) {
	old := n.durKids
	for _, kid := range old {
		kid.durLinks--
	}
	n.durKids = cloneKids(n.kids)
	for _, kid := range n.durKids {
		kid.durLinks++
	}
	n.dirtyNames = false
	for _, kid := range old {
		fs.collect(kid) // an unlink or a rename away is durable now
	}
}

func (fs *lazyFS) command(line string) report {
	fields := strings.Fields(line)
	if len(fields) == 0 {
		return report{Error: "empty command"}
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	switch fields[0] {
	case "ping":
		return report{OK: true}
	case "stats":
		return fs.stats()
	case "drop":
		return fs.crash(nil)
	case "tear":
		if len(fields) != 2 {
			return report{Error: "usage: tear SEED"}
		}
		seed, err := strconv.ParseInt(fields[1], 10, 64)
		if err != nil {
			return report{Error: "tear: SEED must be an integer"}
		}
		return fs.crash(rand.New(rand.NewSource(seed)))
	case "sync":
		return fs.syncAll()
	}
	return report{Error: fmt.Sprintf("unknown command %q (ping, stats, drop, tear SEED, sync)", fields[0])}
}

func serveControl(fs *lazyFS, ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		go func(c net.Conn) {
			defer c.Close()
			scanner := bufio.NewScanner(c)
			enc := json.NewEncoder(c)
			for scanner.Scan() {
				if enc.Encode(fs.command(scanner.Text())) != nil {
					return
				}
			}
		}(conn)
	}
}

// -- the file system --------------------------------------------------------------------------

func (fs *lazyFS) Lookup(cancel <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	parent, st := fs.dir(h.NodeId)
	if !st.Ok() {
		return st
	}
	n, ok := parent.kids[name]
	if !ok {
		return fuse.ENOENT
	}
	fs.entry(n, out)
	return fuse.OK
}

func (fs *lazyFS) Forget(nodeid, nlookup uint64) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if n, ok := fs.inodes[nodeid]; ok {
		if n.nlookup < nlookup {
			n.nlookup = 0
		} else {
			n.nlookup -= nlookup
		}
		fs.collect(n)
	}
}

func (fs *lazyFS) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, ok := fs.inodes[in.NodeId]
	if !ok {
		return fuse.ENOENT
	}
	out.SetTimeout(0)
	n.fill(&out.Attr)
	return fuse.OK
}

func (fs *lazyFS) truncate(n *inode, size int64) {
	old := int64(len(n.data))
	if size == old {
		return
	}
	n.data = resize(n.data, size)
	if size > old {
		n.dirty = addExtent(n.dirty, old, size)
	}
	n.sizeDirty = true
	n.mtime = time.Now()
}

func (fs *lazyFS) SetAttr(cancel <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, ok := fs.inodes[in.NodeId]
	if !ok {
		return fuse.ENOENT
	}
	if in.Valid&fuse.FATTR_SIZE != 0 {
		if n.isDir() {
			return fuse.Status(syscall.EISDIR)
		}
		fs.truncate(n, int64(in.Size))
	}
	if in.Valid&fuse.FATTR_MODE != 0 {
		n.mode = n.mode&syscall.S_IFMT | in.Mode&^uint32(syscall.S_IFMT)
	}
	if in.Valid&fuse.FATTR_UID != 0 {
		n.uid = in.Uid
	}
	if in.Valid&fuse.FATTR_GID != 0 {
		n.gid = in.Gid
	}
	if in.Valid&fuse.FATTR_MTIME != 0 {
		n.mtime = time.Unix(int64(in.Mtime), int64(in.Mtimensec))
	}
	if in.Valid&fuse.FATTR_MTIME_NOW != 0 {
		n.mtime = time.Now()
	}
	n.ctime = time.Now()
	out.SetTimeout(0)
	n.fill(&out.Attr)
	return fuse.OK
}

func (fs *lazyFS) link(parent *inode, name string, n *inode) {
	if old, ok := parent.kids[name]; ok {
		old.links--
		fs.collect(old)
	}
	parent.kids[name] = n
	n.links++
	parent.dirtyNames = true
	parent.mtime = time.Now()
}

func (fs *lazyFS) unlinkName(parent *inode, name string) {
	if n, ok := parent.kids[name]; ok {
		delete(parent.kids, name)
		n.links--
		parent.dirtyNames = true
		parent.mtime = time.Now()
		fs.collect(n)
	}
}

func (fs *lazyFS) Mknod(cancel <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	if in.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return fuse.EPERM // regular files only: data directories need nothing else
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	parent, st := fs.dir(in.NodeId)
	if !st.Ok() {
		return st
	}
	if _, ok := parent.kids[name]; ok {
		return fuse.Status(syscall.EEXIST)
	}
	n := fs.newInode(in.Mode, in.Uid, in.Gid)
	fs.link(parent, name, n)
	fs.entry(n, out)
	return fuse.OK
}

func (fs *lazyFS) Mkdir(cancel <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	parent, st := fs.dir(in.NodeId)
	if !st.Ok() {
		return st
	}
	if _, ok := parent.kids[name]; ok {
		return fuse.Status(syscall.EEXIST)
	}
	n := fs.newInode(syscall.S_IFDIR|in.Mode&0o7777, in.Uid, in.Gid)
	fs.link(parent, name, n)
	fs.entry(n, out)
	return fuse.OK
}

func (fs *lazyFS) Unlink(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	parent, st := fs.dir(h.NodeId)
	if !st.Ok() {
		return st
	}
	n, ok := parent.kids[name]
	if !ok {
		return fuse.ENOENT
	}
	if n.isDir() {
		return fuse.Status(syscall.EISDIR)
	}
	fs.unlinkName(parent, name)
	return fuse.OK
}

func (fs *lazyFS) Rmdir(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	parent, st := fs.dir(h.NodeId)
	if !st.Ok() {
		return st
	}
	n, ok := parent.kids[name]
	if !ok {
		return fuse.ENOENT
	}
	if !n.isDir() {
		return fuse.ENOTDIR
	}
	if len(n.kids) > 0 {
		return fuse.Status(syscall.ENOTEMPTY)
	}
	fs.unlinkName(parent, name)
	return fuse.OK
}

const renameNoReplace = 1 // RENAME_NOREPLACE

func (fs *lazyFS) Rename(cancel <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	src, st := fs.dir(in.NodeId)
	if !st.Ok() {
		return st
	}
	dst, st := fs.dir(in.Newdir)
	if !st.Ok() {
		return st
	}
	n, ok := src.kids[oldName]
	if !ok {
		return fuse.ENOENT
	}
	if in.Flags&^uint32(renameNoReplace) != 0 {
		return fuse.EINVAL // RENAME_EXCHANGE, RENAME_WHITEOUT: not needed by data directories
	}
	if old, exists := dst.kids[newName]; exists {
		if old == n {
			return fuse.OK
		}
		if in.Flags&renameNoReplace != 0 {
			return fuse.Status(syscall.EEXIST)
		}
		if old.isDir() != n.isDir() {
			if old.isDir() {
				return fuse.Status(syscall.EISDIR)
			}
			return fuse.ENOTDIR
		}
		if old.isDir() && len(old.kids) > 0 {
			return fuse.Status(syscall.ENOTEMPTY)
		}
	}
	n.links++ // keep it alive between the two steps
	fs.unlinkName(src, oldName)
	fs.link(dst, newName, n)
	n.links--
	n.ctime = time.Now()
	return fuse.OK
}

func (fs *lazyFS) open(n *inode, flags uint32, out *fuse.OpenOut) {
	if flags&syscall.O_TRUNC != 0 && flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		fs.truncate(n, 0)
	}
	n.opens++
	fh := fs.nextFh
	fs.nextFh++
	fs.handles[fh] = &handle{n: n, append: flags&syscall.O_APPEND != 0}
	out.Fh = fh
	// direct_io: no page cache, so dropped data cannot be read back from the kernel.
	out.OpenFlags = fuse.FOPEN_DIRECT_IO
}

func (fs *lazyFS) Create(cancel <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	parent, st := fs.dir(in.NodeId)
	if !st.Ok() {
		return st
	}
	n, exists := parent.kids[name]
	if exists {
		if in.Flags&syscall.O_EXCL != 0 {
			return fuse.Status(syscall.EEXIST)
		}
		if n.isDir() {
			return fuse.Status(syscall.EISDIR)
		}
	} else {
		n = fs.newInode(syscall.S_IFREG|in.Mode&0o7777, in.Uid, in.Gid)
		fs.link(parent, name, n)
	}
	fs.entry(n, &out.EntryOut)
	fs.open(n, in.Flags, &out.OpenOut)
	return fuse.OK
}

func (fs *lazyFS) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, ok := fs.inodes[in.NodeId]
	if !ok {
		return fuse.ENOENT
	}
	if n.isDir() {
		return fuse.Status(syscall.EISDIR)
	}
	fs.open(n, in.Flags, out)
	return fuse.OK
}

func (fs *lazyFS) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	h, ok := fs.handles[in.Fh]
	if !ok {
		return nil, fuse.EBADF
	}
	off := int64(in.Offset)
	if off >= int64(len(h.n.data)) {
		return fuse.ReadResultData(nil), fuse.OK
	}
	// copied under the lock: the reply is sent after it is released
	k := copy(buf[:in.Size], h.n.data[off:])
	return fuse.ReadResultData(buf[:k]), fuse.OK
}

func (fs *lazyFS) Write(cancel <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	h, ok := fs.handles[in.Fh]
	if !ok {
		return 0, fuse.EBADF
	}
	n := h.n
	off := int64(in.Offset)
	if h.append {
		off = int64(len(n.data)) // O_APPEND: at our end of file, whatever the kernel believes
	}
	end := off + int64(len(data))
	old := int64(len(n.data))
	if end > old {
		n.data = resize(n.data, end)
		n.sizeDirty = true
	}
	copy(n.data[off:end], data)
	start := off
	if old < start {
		start = old // the hole before the write is new, unsynced data too
	}
	n.markWritten(start, end)
	n.mtime = time.Now()
	return uint32(len(data)), fuse.OK
}

func (fs *lazyFS) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status { return fuse.OK }

func (fs *lazyFS) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if h, ok := fs.handles[in.Fh]; ok {
		delete(fs.handles, in.Fh)
		h.n.opens--
		fs.collect(h.n)
	}
}

func (fs *lazyFS) Fsync(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, ok := fs.inodes[in.NodeId]
	if !ok {
		return fuse.ENOENT
	}
	if n.isDir() {
		fs.syncDir(n)
	} else {
		n.syncData()
	}
	return fuse.OK
}

func (fs *lazyFS) Fallocate(cancel <-chan struct{}, in *fuse.FallocateIn) fuse.Status {
	if in.Mode != 0 {
		return fuse.Status(syscall.EOPNOTSUPP)
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, ok := fs.inodes[in.NodeId]
	if !ok {
		return fuse.ENOENT
	}
	if end := int64(in.Offset + in.Length); end > int64(len(n.data)) {
		fs.truncate(n, end)
	}
	return fuse.OK
}

func (fs *lazyFS) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, st := fs.dir(in.NodeId)
	if !st.Ok() {
		return st
	}
	entries := []fuse.DirEntry{{Name: ".", Ino: n.ino, Mode: syscall.S_IFDIR}, {Name: "..", Mode: syscall.S_IFDIR}}
	names := make([]string, 0, len(n.kids))
	for name := range n.kids {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		kid := n.kids[name]
		entries = append(entries, fuse.DirEntry{Name: name, Ino: kid.ino, Mode: kid.mode})
	}
	for i := range entries {
		entries[i].Off = uint64(i + 1)
	}
	n.opens++
	fh := fs.nextFh
	fs.nextFh++
	fs.handles[fh] = &handle{n: n, entries: entries}
	out.Fh = fh
	return fuse.OK
}

func (fs *lazyFS) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	h, ok := fs.handles[in.Fh]
	if !ok {
		return fuse.EBADF
	}
	for i := int(in.Offset); i < len(h.entries); i++ {
		if !out.AddDirEntry(h.entries[i]) {
			break
		}
	}
	return fuse.OK
}

func (fs *lazyFS) ReleaseDir(in *fuse.ReleaseIn) {
	fs.Release(nil, in)
}

func (fs *lazyFS) FsyncDir(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	return fs.Fsync(cancel, in)
}

func (fs *lazyFS) Access(cancel <-chan struct{}, in *fuse.AccessIn) fuse.Status { return fuse.OK }

func (fs *lazyFS) StatFs(cancel <-chan struct{}, h *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	out.Bsize, out.Frsize, out.NameLen = 4096, 4096, 255
	out.Blocks, out.Bfree, out.Bavail = 1<<24, 1<<23, 1<<23
	out.Files, out.Ffree = 1<<20, 1<<19
	return fuse.OK
}

// -- main -------------------------------------------------------------------------------------

func main() {
	mount := flag.String("mount", "", "the directory to mount on (must exist)")
	control := flag.String("control", "", "the control socket's path")
	fsname := flag.String("fsname", "splitbrain-lazydisk", "the mount's source, as /proc/mounts shows it")
	debug := flag.Bool("debug", false, "log every FUSE request")
	flag.Parse()
	if *mount == "" || *control == "" {
		fmt.Fprintln(os.Stderr, "lazydisk: --mount and --control are required")
		os.Exit(2)
	}
	fs := newFS()
	opts := &fuse.MountOptions{
		AllowOther: true, // the container's processes and the Docker daemon reach it too
		FsName:     fmt.Sprintf("%s:daemon=%d", *fsname, os.Getpid()),
		Name:       "splitbrain-lazydisk",
		// root mounts with mount(2) itself; fusermount3 otherwise
		DirectMount:        true,
		DisableXAttrs:      true,
		DisableReadDirPlus: true,
		MaxWrite:           1 << 20,
		Options:            []string{"default_permissions"},
		Debug:              *debug,
	}
	server, err := fuse.NewServer(fs, *mount, opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "lazydisk: cannot mount %s: %v\n", *mount, err)
		os.Exit(1)
	}
	go server.Serve()
	if err := server.WaitMount(); err != nil {
		fmt.Fprintf(os.Stderr, "lazydisk: mount %s did not come up: %v\n", *mount, err)
		os.Exit(1)
	}
	_ = os.Remove(*control)
	ln, err := net.Listen("unix", *control)
	if err != nil {
		fmt.Fprintf(os.Stderr, "lazydisk: control socket %s: %v\n", *control, err)
		_ = server.Unmount()
		os.Exit(1)
	}
	go serveControl(fs, ln)
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	done := make(chan struct{})
	go func() { server.Wait(); close(done) }()
	select {
	case <-signals:
		if err := server.Unmount(); err != nil {
			// still in use (a process inside, a bind mount): detach it, the kernel ends it later
			_ = syscall.Unmount(*mount, syscall.MNT_DETACH)
		}
	case <-done: // unmounted from outside (fusermount3 -u)
	}
	ln.Close()
	_ = os.Remove(*control)
}
