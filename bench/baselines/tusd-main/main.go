// A minimal tusd v2 server for the benchmark: pkg/handler + pkg/filestore + pkg/memorylocker, the same three
// pieces the tusd command wires for `tusd -upload-dir DIR` (minus hooks, metrics and its file locker).
// Built by bench/baselines/build-tusd.sh outside the repository; prints "listening on http://HOST:PORT/files/" (the same line as tus-server).
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"

	"github.com/tus/tusd/v2/pkg/filestore"
	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/tus/tusd/v2/pkg/memorylocker"
	"golang.org/x/exp/slog"
)

func main() {
	host := flag.String("host", "127.0.0.1", "listen address")
	port := flag.Int("port", 0, "port (0: any free port)")
	dir := flag.String("upload-dir", "./data", "upload directory")
	flag.Parse()

	if err := os.MkdirAll(*dir, 0o755); err != nil {
		log.Fatal(err)
	}
	composer := handler.NewStoreComposer()
	filestore.New(*dir).UseIn(composer)
	memorylocker.New().UseIn(composer)

	h, err := handler.NewHandler(handler.Config{
		BasePath:                "/files/",
		StoreComposer:           composer,
		RespectForwardedHeaders: false,
		// Errors only, like tus-server --log-level error.
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/files/", http.StripPrefix("/files/", h))
	mux.Handle("/files", http.StripPrefix("/files", h))

	ln, err := net.Listen("tcp", fmt.Sprintf("%s:%d", *host, *port))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("listening on http://%s/files/\n", ln.Addr().String())
	log.Fatal(http.Serve(ln, mux))
}
