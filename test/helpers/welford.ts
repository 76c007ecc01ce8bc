/** Running Welford moments (n, mean, m2) of a stream, as the outcome script keeps them; `fromWelford` reads them. */
export class Welford {
  n = 0;
  mean = 0;
  m2 = 0;
  add(x: number): void {
    this.n++;
    const d = x - this.mean;
    this.mean += d / this.n;
    this.m2 += d * (x - this.mean);
  }
}
