// Command ferretdb-embedded runs FerretDB (https://www.ferretdb.com/) with the
// SQLite backend as a local, MongoDB wire-compatible stand-in for development
// and CI. It embeds github.com/FerretDB/FerretDB/ferretdb because
// `go install github.com/FerretDB/FerretDB/cmd/ferretdb@v1.24.2` panics at
// start (its generated build/version/version.txt is not part of the module).
//
// scripts/ferretdb.sh builds it against a copy of the FerretDB module with the
// patches of tools/ferretdb/patches applied (see tools/ferretdb/README.md). Each
// patch adds a marker constant to package ferretdb that appliedPatches below
// lists, so a build without the patches does not compile, and `version` (and
// buildInfo's buildEnvironment) name the patches this binary really contains.
//
// Usage:
//
//	ferretdb-embedded [-listen-addr 127.0.0.1:27017] [-state-dir DIR | -sqlite-url file:/DIR/] [-log-level info]
//	ferretdb-embedded ping [-url mongodb://127.0.0.1:27017/] [-timeout 3s]
//	ferretdb-embedded version    prints e.g. "FerretDB v1.24.2 (SQLite) patched: sqlite-background-checkpoint, sqlite-id-index-expression, ..."
//
// Environment variables (used as flag defaults):
//
//	FERRETDB_LISTEN_ADDR, FERRETDB_STATE_DIR, FERRETDB_SQLITE_URL, FERRETDB_LOG_LEVEL,
//	MONGO_URL (for ping).
//
// The server exits cleanly (status 0) on SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/FerretDB/FerretDB/build/version"
	"github.com/FerretDB/FerretDB/ferretdb"
	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"
)

// ferretDBModule is the module path of FerretDB (its version is in go.mod).
const ferretDBModule = "github.com/FerretDB/FerretDB"

// appliedPatches names the patches compiled into this binary. The constants
// exist only in the patched FerretDB module (each patch adds its own), so an
// unpatched build fails to compile instead of claiming fixes it lacks.
var appliedPatches = []string{
	ferretdb.PatchFSQLDebugLogWhenEnabled,
	ferretdb.PatchResourceProfileDebugOnly,
	ferretdb.PatchSQLiteBackgroundCheckpoint,
	ferretdb.PatchSQLiteIDIndexExpression,
	ferretdb.PatchSQLiteIDPushdownAllFilters,
	ferretdb.PatchSQLitePrefilterPushdown,
	ferretdb.PatchSQLiteSecondaryIndexesUnbuilt,
	ferretdb.PatchUpdateClosePerStatement,
}

// ferretDBVersion is the version of the FerretDB module this binary was built
// from, read from the binary's build information.
func ferretDBVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range bi.Deps {
			if dep.Path == ferretDBModule && dep.Version != "" {
				return dep.Version
			}
		}
	}
	return "(unknown version)"
}

// versionString describes the embedded FerretDB, e.g.
// "FerretDB v1.24.2 (SQLite) patched: sqlite-id-index-expression, update-close-per-statement".
func versionString() string {
	s := fmt.Sprintf("FerretDB %s (SQLite)", ferretDBVersion())
	if len(appliedPatches) > 0 {
		s += " patched: " + strings.Join(appliedPatches, ", ")
	}
	return s
}

func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

func main() {
	args := os.Args[1:]
	if len(args) > 0 {
		switch args[0] {
		case "ping":
			os.Exit(runPing(args[1:]))
		case "version", "-version", "--version":
			fmt.Println(versionString())
			return
		case "serve":
			args = args[1:]
		}
	}
	os.Exit(runServe(args))
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(s))
	return l, err
}

func runServe(args []string) int {
	fs := flag.NewFlagSet("ferretdb-embedded", flag.ContinueOnError)
	listenAddr := fs.String("listen-addr", envOr("FERRETDB_LISTEN_ADDR", "127.0.0.1:27017"), "TCP listen address (env FERRETDB_LISTEN_ADDR)")
	stateDir := fs.String("state-dir", envOr("FERRETDB_STATE_DIR", "data"), "directory for SQLite database files; created if missing (env FERRETDB_STATE_DIR)")
	sqliteURL := fs.String("sqlite-url", envOr("FERRETDB_SQLITE_URL", ""), "SQLite URI (file:/dir/); overrides -state-dir (env FERRETDB_SQLITE_URL)")
	logLevel := fs.String("log-level", envOr("FERRETDB_LOG_LEVEL", "warn"), "log level: debug, info, warn, error (env FERRETDB_LOG_LEVEL)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}

	level, err := parseLevel(*logLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb-embedded: invalid -log-level %q: %v\n", *logLevel, err)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	// The server allocates a few short-lived documents per statement on a heap of a few tens of MB, and with Go's
	// default GOGC of 100 collected so often that the collector took about a tenth of its CPU under heartbeat
	// updates (0.49 -> 0.42 ms of CPU per update statement at 400). GOGC in the environment still wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}

	uri := *sqliteURL
	if uri == "" {
		dir, err := filepath.Abs(*stateDir)
		if err != nil {
			fmt.Fprintf(os.Stderr, "ferretdb-embedded: %v\n", err)
			return 1
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			fmt.Fprintf(os.Stderr, "ferretdb-embedded: cannot create state dir: %v\n", err)
			return 1
		}
		// WAL with synchronous=NORMAL: a commit survives a crash of this process (what the tests and
		// fault suite exercise) without an fsync per write, which made every write cost ~20 ms.
		// wal_autocheckpoint(0): the patched pool checkpoints every database's WAL once a second in the
		// background (patch sqlite-background-checkpoint). SQLite's own checkpoint runs inside the committing
		// statement, and under a fleet's heartbeat updates it ran again at every commit once a checkpoint
		// could not reset the WAL (0.72 -> 0.53 ms of CPU per update statement). journal_size_limit: the WAL
		// file is cut back to 64 MiB when it starts over.
		uri = (&url.URL{Scheme: "file", Path: dir + "/", RawQuery: "_pragma=busy_timeout(10000)&_pragma=journal_mode(wal)&_pragma=synchronous(normal)&_pragma=wal_autocheckpoint(0)&_pragma=journal_size_limit(67108864)"}).String()
	} else if u, err := url.Parse(uri); err == nil && u.Scheme == "file" {
		// FerretDB requires the directory to exist; create it for convenience.
		p := u.Path
		if p == "" {
			p = u.Opaque
		}
		if p != "" {
			_ = os.MkdirAll(p, 0o755)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// buildInfo answers with this document as its buildEnvironment (empty otherwise
	// in an embedded FerretDB), so a client can tell which patches the server has.
	version.Get().BuildEnvironment.Set("ferretdb-embedded.patches", strings.Join(appliedPatches, ","))

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *listenAddr},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: uri,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb-embedded: %v\n", err)
		return 1
	}

	// New has already bound the TCP listener (it fails there when the address
	// is in use), so the URI below is accurate and connections are accepted
	// as soon as Run starts.
	fmt.Fprintf(os.Stderr, "ferretdb-embedded: %s, sqlite %s, listening on %s (pid %d)\n",
		versionString(), uri, f.MongoDBURI(), os.Getpid())

	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()

	select {
	case err := <-done:
		// Run returned without a signal: listener failed (e.g. address in use).
		if ctx.Err() == nil {
			if err == nil {
				err = errors.New("listener stopped unexpectedly (address in use?)")
			}
			fmt.Fprintf(os.Stderr, "ferretdb-embedded: %v\n", err)
			return 1
		}
	case <-ctx.Done():
		fmt.Fprintln(os.Stderr, "ferretdb-embedded: signal received, shutting down")
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			fmt.Fprintln(os.Stderr, "ferretdb-embedded: shutdown timed out")
			return 1
		}
	}
	fmt.Fprintln(os.Stderr, "ferretdb-embedded: stopped")
	return 0
}

// runPing connects to a MongoDB-compatible server and runs {ping: 1}.
// Exit status: 0 when it answered, 1 otherwise.
func runPing(args []string) int {
	fs := flag.NewFlagSet("ferretdb-embedded ping", flag.ContinueOnError)
	uri := fs.String("url", envOr("MONGO_URL", "mongodb://127.0.0.1:27017/"), "MongoDB connection string (env MONGO_URL)")
	timeout := fs.Duration("timeout", 3*time.Second, "overall timeout")
	quiet := fs.Bool("q", false, "print nothing")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		*uri = fs.Arg(0)
	}

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	opts := options.Client().ApplyURI(*uri).
		SetServerSelectionTimeout(*timeout).
		SetConnectTimeout(*timeout)
	client, err := mongo.Connect(ctx, opts)
	if err != nil {
		if !*quiet {
			fmt.Fprintf(os.Stderr, "ping %s: %v\n", redact(*uri), err)
		}
		return 1
	}
	defer func() {
		dctx, dcancel := context.WithTimeout(context.Background(), time.Second)
		defer dcancel()
		_ = client.Disconnect(dctx)
	}()

	var res bson.M
	if err := client.Database("admin").RunCommand(ctx, bson.D{{Key: "ping", Value: 1}}).Decode(&res); err != nil {
		if !*quiet {
			fmt.Fprintf(os.Stderr, "ping %s: %v\n", redact(*uri), err)
		}
		return 1
	}
	if !*quiet {
		fmt.Printf("ping %s: ok\n", redact(*uri))
	}
	return 0
}

// redact hides a password in a connection string.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return strings.Replace(u.String(), "xxxxx", "***", 1)
}
