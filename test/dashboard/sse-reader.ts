/** One server-sent event as the browser's EventSource would dispatch it. */
export interface SseMessage {
  event: string;
  data: string;
}

export interface SseStream {
  status: number;
  headers: Headers;
  /** The next event named `event` (others are skipped), or a rejection after `timeoutMs`. */
  next(event: string, timeoutMs?: number): Promise<SseMessage>;
  /** Comment lines seen so far (keep-alives). */
  comments: string[];
  /** Every event received so far, in order (whether or not next() consumed it). */
  received: SseMessage[];
  close(): void;
}

/** A small SSE reader over fetch's body stream, enough to test the dashboard's stream. */
export async function openSse(url: string): Promise<SseStream> {
  const abort = new AbortController();
  const response = await fetch(url, { headers: { Accept: 'text/event-stream' }, signal: abort.signal });
  const queue: SseMessage[] = [];
  const comments: string[] = [];
  const received: SseMessage[] = [];
  let wake = null as (() => void) | null;
  let ended = false;

  if (response.body) {
    void (async () => {
      const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value.replace(/\r\n?/g, '\n');
          let end: number;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            let event = 'message';
            const data: string[] = [];
            for (const line of block.split('\n')) {
              if (line.startsWith(':')) comments.push(line.slice(1).trim());
              else if (line.startsWith('event:')) event = line.slice(6).trim();
              else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
            }
            if (data.length) {
              const message = { event, data: data.join('\n') };
              queue.push(message);
              received.push(message);
            }
          }
          wake?.();
        }
      } catch {
        /* aborted */
      } finally {
        ended = true;
        wake?.();
      }
    })();
  }

  return {
    status: response.status,
    headers: response.headers,
    comments,
    received,
    async next(event, timeoutMs = 3000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const index = queue.findIndex((m) => m.event === event);
        if (index >= 0) return queue.splice(0, index + 1).pop()!;
        if (ended) throw new Error(`stream ended before a '${event}' event`);
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`no '${event}' event within ${timeoutMs} ms`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left);
          wake = () => {
            clearTimeout(timer);
            wake = null;
            resolve();
          };
        });
      }
    },
    close() {
      abort.abort();
    },
  };
}
