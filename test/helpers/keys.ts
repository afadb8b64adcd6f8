import { standInEd25519 } from "../../cli/plan/mock-engine";

/** A real, throwaway ED25519 key pair for tests (OpenSSH private key, `ssh-ed25519 AAAA...` public key). */
export function testKeyPair(seed: string): { privateKey: string; publicKey: string } {
  const k = standInEd25519(`test ${seed}`);
  return { privateKey: k.privateKeyOpenssh, publicKey: k.publicKeyOpenssh.trim() };
}

/** A line from the middle of an OpenSSH private key: present in any copy of it, in no other text. */
export const keyBodyLine = (privateKey: string): string => privateKey.split("\n")[4];
