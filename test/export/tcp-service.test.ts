/**
 * TCP service names for NBD listening addresses (src/export/nbd/tcp-service.ts),
 * as getaddrinfo finds them in /etc/services: by name or alias, TCP only.
 */
import { describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findTcpService, tcpServicePort } from '../../src/export/nbd/tcp-service.js';

const SERVICES = `# Network services
http\t\t80/tcp\t\twww\t\t# WorldWideWeb HTTP
syslog\t\t514/udp
nbd\t\t10809/tcp\t\t\t# Linux Network Block Device
  spaced   7000/tcp   alias-one alias-two
`;

describe('TCP service names (/etc/services)', () => {
  it('finds names and aliases of TCP services, not UDP ones or comments', () => {
    expect(findTcpService(SERVICES, 'http')).toBe(80);
    expect(findTcpService(SERVICES, 'www')).toBe(80);
    expect(findTcpService(SERVICES, 'nbd')).toBe(10809);
    expect(findTcpService(SERVICES, 'alias-two')).toBe(7000);
    expect(findTcpService(SERVICES, 'syslog')).toBeUndefined();
    expect(findTcpService(SERVICES, 'WorldWideWeb')).toBeUndefined();
    expect(findTcpService(SERVICES, 'nosuch')).toBeUndefined();
  });

  it('reads the file; a missing file resolves nothing', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dw-services-'));
    try {
      writeFileSync(join(dir, 'services'), SERVICES);
      expect(tcpServicePort('nbd', join(dir, 'services'))).toBe(10809);
      expect(tcpServicePort('nbd', join(dir, 'missing'))).toBeUndefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
