// A one-line progress bar on stderr for the long phases (dataset generation, ingest). Without a
// terminal it prints one line when a phase starts and one when it ends.

export class Progress {
  private readonly started = performance.now();
  private lastDraw = 0;
  private readonly tty = process.stderr.isTTY === true;

  constructor(
    private readonly label: string,
    private readonly total: number,
  ) {
    if (!this.tty) process.stderr.write(`${label}…\n`);
    else this.draw(0);
  }

  update(done: number): void {
    const now = performance.now();
    if (!this.tty || now - this.lastDraw < 100) return;
    this.lastDraw = now;
    this.draw(done);
  }

  finish(note = ""): void {
    const secs = ((performance.now() - this.started) / 1000).toFixed(1);
    if (this.tty) process.stderr.write("\r\x1b[2K");
    process.stderr.write(`${this.label}: done in ${secs} s${note ? ` (${note})` : ""}\n`);
  }

  private draw(done: number): void {
    const width = 30;
    const frac = this.total > 0 ? Math.min(1, done / this.total) : 0;
    const filled = Math.round(frac * width);
    const secs = ((performance.now() - this.started) / 1000).toFixed(1);
    process.stderr.write(
      `\r\x1b[2K${this.label} [${"#".repeat(filled)}${"-".repeat(width - filled)}] ${(frac * 100).toFixed(0)}% ${secs} s`,
    );
  }
}
