/**
 * Firmware blobs as objects in an S3-compatible bucket (FIRMWARE_STORE=s3: AWS, MinIO, Garage, Ceph RGW, S3Proxy),
 * so that any number of replicas share them without a volume. An upload streams into a temporary object through
 * multipart parts (at most one part, 5 MiB, held in memory per upload), then is copied to its key inside the bucket.
 * A download reads the object whole into the memory cache, or streams the requested range with a ranged GET.
 *
 * A bucket that cannot be reached (refused, timed out, cut mid-way) or answers 5xx is a 503 UPSTREAM_UNAVAILABLE of
 * service "firmware storage"; any other refusal of the bucket a 502 UPSTREAM_ERROR. A missing object stays BlobMissing.
 */
import { Readable } from "node:stream";
import {
  AbortMultipartUploadCommand,
  CopyObjectCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  paginateListObjectsV2,
  ListMultipartUploadsCommand,
  S3Client,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { AppError, upstreamError, upstreamUnavailable } from "../errors.ts";
import { errorMessage, type Logger } from "../logger.ts";
import type { RangeReader } from "../stored-file.ts";
import { BlobMissing, type BlobEntry, type BlobStorage } from "./blobs.ts";

export type S3Settings = {
  endpoint: string | undefined;
  region: string;
  bucket: string;
  accessKeyId: string | undefined;
  secretAccessKey: string | undefined;
  forcePathStyle: boolean;
};

/** The smallest part S3 accepts: an upload holds at most this much of an image in memory. */
const PART_BYTES = 5 * 1024 * 1024;

const notFound = (error: unknown) => {
  const { name, $metadata } = error as { name?: string; $metadata?: { httpStatusCode?: number } };
  return name === "NoSuchKey" || name === "NotFound" || $metadata?.httpStatusCode === 404;
};

const SERVICE = "firmware storage";
/** A connection that takes longer is given up (and retried by the SDK); so is one that stays silent this long. */
const CONNECT_TIMEOUT_MS = 5_000;
const SILENCE_TIMEOUT_MS = 10_000;
/**
 * A removal is best effort (what it leaves is swept at start): a failed upload's clean-up must not hold its answer for
 * another round of retries against a silent bucket.
 */
const REMOVE_DEADLINE_MS = 5_000;

/**
 * What the bucket's failure means to the client: the bucket unreachable, too slow or failing (5xx) → 503, it can try
 * again shortly; the bucket refused the request (credentials, permissions) → 502. Never the SDK's text, which may
 * name hosts and keys: that goes to the log (`warn`, as the request's own log does not show an AppError's cause).
 * Errors that are not the bucket's pass unchanged.
 */
export function storageFailure(error: unknown, logger?: Pick<Logger, "warn">): unknown {
  if (error instanceof AppError || error instanceof BlobMissing) return error;
  const status = (error as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
  const refused = status !== undefined && status < 500 && status !== 429;
  logger?.warn(refused ? "The firmware storage refused a request" : "The firmware storage is unavailable", {
    http_status: status ?? null,
    error: `${(error as Error)?.name ?? "Error"}: ${errorMessage(error)}`,
  });
  return refused
    ? upstreamError(SERVICE, `The firmware storage refused the request (HTTP ${status}); check the S3 settings and the bucket's permissions.`)
    : upstreamUnavailable(SERVICE, "The firmware storage (S3 bucket) is not reachable right now; try again shortly. No firmware was changed.");
}

export function createS3Blobs(settings: S3Settings, logger?: Pick<Logger, "warn">): BlobStorage & { client: S3Client } {
  const Bucket = settings.bucket;
  const failAsStorage = (error: unknown): never => {
    throw storageFailure(error, logger);
  };
  const missingAsBlobMissing = (key: string) => (error: unknown) => {
    throw notFound(error) ? new BlobMissing(`${key}: ${(error as Error).message}`) : storageFailure(error, logger);
  };
  const client = new S3Client({
    endpoint: settings.endpoint,
    region: settings.region,
    forcePathStyle: settings.forcePathStyle,
    // Without keys the SDK's own chain applies (environment, web identity, instance role).
    credentials: settings.accessKeyId && settings.secretAccessKey ? { accessKeyId: settings.accessKeyId, secretAccessKey: settings.secretAccessKey } : undefined,
    // Checksums only where the API demands them: not every S3-compatible server knows the newer checksum headers.
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
    // Without these a bucket that accepts connections but never answers holds a request forever.
    requestHandler: { connectionTimeout: CONNECT_TIMEOUT_MS, socketTimeout: SILENCE_TIMEOUT_MS },
  });

  /** Reads ranges of `key` with ranged GETs; a stream destroyed early (the client went) stops its GET. */
  function rangeReader(key: string): RangeReader {
    const controller = new AbortController();
    async function* range(start: number, end: number) {
      const { Body } = await client.send(new GetObjectCommand({ Bucket, Key: key, Range: `bytes=${start}-${end}` }), { abortSignal: controller.signal }).catch(failAsStorage);
      try {
        yield* Body as Readable;
      } catch (error) {
        // The bucket went away mid-stream (the response is then cut, lib/http/file-response.ts); not when the client did.
        throw controller.signal.aborted ? error : storageFailure(error, logger);
      }
    }
    return {
      createReadStream: ({ start, end, highWaterMark }) => Readable.from(range(start, end), { objectMode: false, highWaterMark }),
      close: async () => controller.abort(),
    };
  }

  return {
    client,
    where: `s3://${Bucket}${settings.endpoint ? ` at ${settings.endpoint}` : ""}`,

    async init() {
      await client.send(new HeadBucketCommand({ Bucket })).catch((error) => {
        throw new Error(`The firmware bucket "${Bucket}" cannot be reached (${notFound(error) ? "it does not exist" : (error as Error).name || (error as Error).message})`, { cause: error });
      });
    },

    async writeTemp(temp, chunks) {
      const upload = new Upload({
        client,
        params: { Bucket, Key: temp, Body: Readable.from(chunks, { objectMode: false }), ContentType: "application/octet-stream" },
        partSize: PART_BYTES,
        queueSize: 1,
        leavePartsOnError: false,
      });
      await upload.done().catch(failAsStorage);
    },

    async promote(temp, key) {
      await client.send(new CopyObjectCommand({ Bucket, Key: key, CopySource: `${Bucket}/${encodeURIComponent(temp)}` })).catch(failAsStorage);
      await client.send(new DeleteObjectCommand({ Bucket, Key: temp })).catch(failAsStorage);
    },

    async readAll(key) {
      const { Body } = await client.send(new GetObjectCommand({ Bucket, Key: key })).catch(missingAsBlobMissing(key));
      const bytes = await Body!.transformToByteArray().catch(failAsStorage);
      // A view of the bytes read, not a second copy of the image.
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    },

    async open(key) {
      const head = await client.send(new HeadObjectCommand({ Bucket, Key: key })).catch(missingAsBlobMissing(key));
      return { size: head.ContentLength ?? 0, reader: rangeReader(key) };
    },

    remove: (key) => client.send(new DeleteObjectCommand({ Bucket, Key: key }), { abortSignal: AbortSignal.timeout(REMOVE_DEADLINE_MS) }).then(() => {}, failAsStorage),

    async removeUnder(prefix) {
      for await (const page of paginateListObjectsV2({ client }, { Bucket, Prefix: prefix })) {
        for (const object of page.Contents ?? []) if (object.Key && !object.Key.endsWith("/")) await client.send(new DeleteObjectCommand({ Bucket, Key: object.Key }));
      }
    },

    async *list(): AsyncIterable<BlobEntry> {
      for await (const page of paginateListObjectsV2({ client }, { Bucket })) {
        // A key ending in "/" is a folder marker (some stores list their directories so), never an image of ours.
        for (const object of page.Contents ?? []) if (object.Key && !object.Key.endsWith("/")) yield { key: object.Key, modifiedMs: object.LastModified?.getTime() ?? Date.now() };
      }
    },

    async tidy(_modelCodes, staleBefore) {
      const { Uploads = [] } = await client.send(new ListMultipartUploadsCommand({ Bucket }));
      for (const { Key, UploadId, Initiated } of Uploads) {
        if (Key && UploadId && (Initiated?.getTime() ?? 0) < staleBefore) await client.send(new AbortMultipartUploadCommand({ Bucket, Key, UploadId }));
      }
    },
  };
}
