/**
 * The real S3 server used by tests: S3Proxy on its filesystem backend, started with `bash s3proxy/start.sh`
 * (S3_TEST_ENDPOINT names any other S3-compatible server, with S3_TEST_ACCESS_KEY_ID and S3_TEST_SECRET_ACCESS_KEY).
 * Tests never skip when it is missing: createTestBucket() fails loudly instead. Each caller gets a bucket of its own.
 */
import { randomBytes } from "node:crypto";
import { CreateBucketCommand, DeleteBucketCommand, DeleteObjectCommand, ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";

export type TestBucket = {
  /** The settings that make the backend store firmware in this bucket (FIRMWARE_STORE=s3 and the S3_* settings). */
  env: Record<string, string>;
  client: S3Client;
  bucket: string;
  /** Keys in the bucket now. */
  keys(): Promise<string[]>;
  /** Empties and deletes the bucket. */
  drop(): Promise<void>;
};

export async function createTestBucket(): Promise<TestBucket> {
  const endpoint = (process.env.S3_TEST_ENDPOINT ?? `http://127.0.0.1:${process.env.S3PROXY_PORT ?? 8280}`).replace(/\/+$/, "");
  const credentials = { accessKeyId: process.env.S3_TEST_ACCESS_KEY_ID ?? "iot-test", secretAccessKey: process.env.S3_TEST_SECRET_ACCESS_KEY ?? "iot-test-secret" };
  const client = new S3Client({ endpoint, region: "us-east-1", forcePathStyle: true, credentials, requestChecksumCalculation: "WHEN_REQUIRED", responseChecksumValidation: "WHEN_REQUIRED" });
  const bucket = `iot-test-${process.pid}-${randomBytes(4).toString("hex")}`;
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
  } catch (error) {
    client.destroy();
    throw new Error(`No S3 server at ${endpoint} (${(error as Error).name}: ${(error as Error).message}); start it with: bash s3proxy/start.sh`);
  }
  // S3Proxy's filesystem backend lists its directories too, as keys ending in "/": they are not objects.
  const keys = async () =>
    ((await client.send(new ListObjectsV2Command({ Bucket: bucket }))).Contents ?? [])
      .map((object) => object.Key!)
      .filter((key) => !key.endsWith("/"))
      .sort();
  return {
    env: {
      FIRMWARE_STORE: "s3",
      S3_ENDPOINT: endpoint,
      S3_REGION: "us-east-1",
      S3_BUCKET: bucket,
      S3_ACCESS_KEY_ID: credentials.accessKeyId,
      S3_SECRET_ACCESS_KEY: credentials.secretAccessKey,
      S3_FORCE_PATH_STYLE: "true",
    },
    client,
    bucket,
    keys,
    async drop() {
      try {
        for (const key of await keys()) await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
        await client.send(new DeleteBucketCommand({ Bucket: bucket }));
      } finally {
        client.destroy();
      }
    },
  };
}
