#!/usr/bin/env node
// Example Node.js client of the AutoML suite's public gRPC API (automl.v1.AutoML).
//
// It loads the .proto files at run time (no code generation), then:
//   1. uploads a CSV file with UploadDataset (a header message, then chunks of at most 1 MiB),
//   2. creates an experiment predicting the given target column,
//   3. starts a run that stops after N models,
//   4. follows the run with WatchRun until the stream ends (one line per event),
//   5. reads the leaderboard,
// and prints one JSON line last on stdout:
//   {"run": "runs/...", "state": "RUN_STATE_SUCCEEDED", "stop_reason": "STOP_REASON_MAX_MODELS",
//    "models": 6, "best_score": 0.96, ...}
//
// Usage:   node run.js <file.csv> <target_column> [max_models]
// Env:     GATEWAY            host:port of the gateway's gRPC port (default 127.0.0.1:50051)
//          AUTOML_API_KEY     API key, sent as "authorization: Bearer <key>" (omit when auth is off)
//          AUTOML_MAX_MODELS  models to evaluate when the argument is not given (default 6)
//          AUTOML_TLS         "1": connect with TLS, trusting the system's roots
//          AUTOML_TLS_CA_FILE PEM file of the CA that signed the gateway's certificate (implies TLS)
//          AUTOML_PROTOS      folder holding automl/v1/*.proto (default: ../../protos from this file)
//
// Any gRPC error ends the script with exit code 1 and one line on stderr:
//   error: <Method>: <STATUS_CODE>: <details>
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const CHUNK_BYTES = 1024 * 1024; // UploadDataset accepts at most 1 MiB per chunk message.
const UNARY_DEADLINE_MS = 60 * 1000;
const UPLOAD_DEADLINE_MS = 10 * 60 * 1000;
const WATCH_RETRIES = 5; // Reconnections of WatchRun after a stream that ended before RUN_FINISHED.

const STATUS_NAMES = Object.fromEntries(Object.entries(grpc.status).map(([name, code]) => [code, name]));

class UsageError extends Error {}

// A gRPC failure with the method that failed: printed as one line.
class CallError extends Error {
  constructor(method, err) {
    const code = STATUS_NAMES[err.code] ?? String(err.code);
    super(`${method}: ${code}: ${String(err.details || err.message).replace(/\s+/g, ' ').trim()}`);
    this.code = err.code;
  }
}

function parseArgs(argv) {
  const [csvPath, targetColumn, maxModelsArg] = argv;
  if (!csvPath || !targetColumn) {
    throw new UsageError('usage: node run.js <file.csv> <target_column> [max_models]');
  }
  if (!fs.existsSync(csvPath)) {
    throw new UsageError(`no such file: ${csvPath}`);
  }
  const raw = maxModelsArg ?? process.env.AUTOML_MAX_MODELS ?? '6';
  const maxModels = Number(raw);
  if (!Number.isInteger(maxModels) || maxModels < 1) {
    throw new UsageError(`max_models must be a positive integer, got ${JSON.stringify(raw)}`);
  }
  return { csvPath, targetColumn, maxModels };
}

function loadApi() {
  const protoDir = process.env.AUTOML_PROTOS || path.resolve(__dirname, '..', '..', 'protos');
  // google/api/annotations.proto (the HTTP rules of the public service) comes
  // from Google's google-proto-files package.
  const googleProtos = path.resolve(require.resolve('google-proto-files/package.json'), '..');
  const definition = protoLoader.loadSync('automl/v1/automl_service.proto', {
    includeDirs: [protoDir, googleProtos],
    keepCase: true, // snake_case field names, as in the .proto files
    longs: String, // int64 fields (sequence, row_count, ...) come back as strings
    enums: String, // enum values come back by name ("RUN_STATE_RUNNING")
    defaults: true, // unset fields come back with their default value...
    oneofs: true, // ...and each oneof names its set field ("content": "snapshot")
  });
  return grpc.loadPackageDefinition(definition).automl.v1;
}

function channelCredentials() {
  const caFile = process.env.AUTOML_TLS_CA_FILE;
  if (caFile) {
    return grpc.credentials.createSsl(fs.readFileSync(caFile));
  }
  if (process.env.AUTOML_TLS === '1') {
    return grpc.credentials.createSsl();
  }
  return grpc.credentials.createInsecure();
}

// Per-call metadata: the API key travels as a Bearer token. (grpc-js refuses call credentials on a
// plaintext channel, so the header is set on each call's metadata instead.)
function callMetadata(apiKey) {
  const metadata = new grpc.Metadata();
  if (apiKey) {
    metadata.set('authorization', `Bearer ${apiKey}`);
  }
  return metadata;
}

function deadline(ms) {
  return new Date(Date.now() + ms);
}

// Promise wrapper of a unary call.
function unary(client, method, request, metadata) {
  return new Promise((resolve, reject) => {
    client[method](request, metadata, { deadline: deadline(UNARY_DEADLINE_MS) }, (err, response) => {
      if (err) {
        reject(new CallError(method, err));
      } else {
        resolve(response);
      }
    });
  });
}

function sha256OfFile(filePath) {
  return new Promise((resolve, reject) => {
    const hash = crypto.createHash('sha256');
    fs.createReadStream(filePath)
      .on('data', (buf) => hash.update(buf))
      .on('error', reject)
      .on('end', () => resolve(hash.digest('hex')));
  });
}

// UploadDataset is a client stream: one header message, then the file's bytes in chunks of at most
// 1 MiB. The read stream pauses while the call's buffer is full (write() returned false) and goes on
// at 'drain', so a large file never sits in memory whole.
async function uploadDataset(client, csvPath, metadata) {
  const expectedSha256 = await sha256OfFile(csvPath);
  return new Promise((resolve, reject) => {
    let done = false;
    let reader = null;
    const call = client.UploadDataset(metadata, { deadline: deadline(UPLOAD_DEADLINE_MS) }, (err, dataset) => {
      done = true;
      if (reader) {
        reader.destroy();
      }
      if (err) {
        reject(new CallError('UploadDataset', err));
      } else {
        resolve(dataset);
      }
    });
    call.write({
      header: {
        display_name: path.basename(csvPath).slice(0, 256),
        description: `Uploaded by the Node.js example client from ${csvPath}`.slice(0, 4096),
        csv_options: {}, // every default: comma-separated UTF-8 with a header row
        expected_sha256: expectedSha256, // the server refuses the upload (DATA_LOSS) if bytes differ
      },
    });
    reader = fs.createReadStream(csvPath, { highWaterMark: CHUNK_BYTES });
    reader.on('data', (buf) => {
      if (done) {
        return;
      }
      if (!call.write({ chunk: buf })) {
        reader.pause();
        call.once('drain', () => reader.resume());
      }
    });
    reader.on('end', () => {
      if (!done) {
        call.end();
      }
    });
    reader.on('error', (err) => {
      if (!done) {
        done = true;
        call.cancel();
        reject(err);
      }
    });
  });
}

function formatScore(value) {
  return value === undefined || value === null ? '-' : Number(value).toFixed(4);
}

// One line per event: sequence, type, score (and what the score belongs to).
function describeEvent(event) {
  const type = event.type;
  const payload = event.payload ? event.payload : null;
  const body = payload ? event[payload] : {};
  let score = '-';
  let detail = '';
  switch (payload) {
    case 'model_evaluated':
      score = formatScore(body.primary_score);
      detail = `#${body.index} ${body.model_family} best=${formatScore(body.best_score)}${body.is_new_best ? ' (new best)' : ''}`;
      break;
    case 'model_failed':
      detail = `#${body.index} ${body.model_family} ${body.outcome}: ${body.error_message}`;
      break;
    case 'run_state_changed':
      detail = `${body.previous_state} -> ${body.state}${body.stop_reason !== 'STOP_REASON_UNSPECIFIED' ? ` (${body.stop_reason})` : ''}`;
      break;
    case 'stop_requested':
      detail = `${body.reason} ${body.message}`;
      break;
    case 'run_started':
      detail = `runner=${body.runner_id} task=${body.task} metric=${body.primary_metric} rows=${body.search_rows}`;
      break;
    case 'run_finished':
      score = formatScore(body.best_score);
      detail = `${body.state} ${body.stop_reason} models=${body.models_evaluated} failed=${body.models_failed}`;
      break;
    default:
      break;
  }
  return `event ${event.sequence} ${type} score=${score}${detail ? ` ${detail}` : ''}`;
}

// Follows a run with WatchRun until its RUN_FINISHED event. The first stream replays the whole history
// (after_sequence 0), so a run that ended before the watch began is still seen to its end. Should a
// stream end early (a restarted gateway, a dropped connection), the watch resumes after the last
// sequence received: the server guarantees no gap and no duplicate.
async function watchRun(client, runName, metadata) {
  let lastSequence = 0;
  let finished = null;
  for (let attempt = 0; attempt <= WATCH_RETRIES && !finished; attempt += 1) {
    try {
      finished = await watchOnce(client, runName, metadata, lastSequence, (event) => {
        lastSequence = Math.max(lastSequence, Number(event.sequence));
      });
    } catch (err) {
      const retryable = err instanceof CallError && err.code === grpc.status.UNAVAILABLE;
      if (!retryable || attempt === WATCH_RETRIES) {
        throw err;
      }
    }
    if (!finished && attempt < WATCH_RETRIES) {
      console.log(`watch: stream ended before the run finished, resuming after sequence ${lastSequence}`);
      await new Promise((resolve) => setTimeout(resolve, 500 * (attempt + 1)));
    }
  }
  if (!finished) {
    throw new Error(`WatchRun: the stream ended ${WATCH_RETRIES + 1} times before ${runName} finished`);
  }
  return finished;
}

// One WatchRun stream: resolves with the RUN_FINISHED payload, or null when the stream ended without it.
function watchOnce(client, runName, metadata, afterSequence, onEvent) {
  return new Promise((resolve, reject) => {
    let finished = null;
    const call = client.WatchRun({ name: runName, after_sequence: String(afterSequence) }, metadata);
    call.on('data', (message) => {
      switch (message.content) {
        case 'snapshot': {
          const run = message.snapshot.run;
          console.log(
            `snapshot ${run.name} state=${run.state} evaluated=${run.models_evaluated} ` +
              `best=${formatScore(run.best_score)} last_sequence=${run.last_sequence}`,
          );
          break;
        }
        case 'batch':
          for (const event of message.batch.events) {
            onEvent(event);
            console.log(describeEvent(event));
            if (event.payload === 'run_finished') {
              finished = event.run_finished;
            }
          }
          break;
        case 'heartbeat':
          break; // the stream is alive; nothing happened
        default:
          break;
      }
    });
    call.on('error', (err) => reject(new CallError('WatchRun', err)));
    call.on('end', () => resolve(finished));
  });
}

async function main() {
  const { csvPath, targetColumn, maxModels } = parseArgs(process.argv.slice(2));
  const target = process.env.GATEWAY || '127.0.0.1:50051';
  const metadata = callMetadata(process.env.AUTOML_API_KEY || '');
  const api = loadApi();
  const client = new api.AutoML(target, channelCredentials());

  try {
    const dataset = await uploadDataset(client, csvPath, metadata);
    console.log(
      `dataset ${dataset.name} rows=${dataset.row_count} columns=${dataset.columns.length} ` +
        `bytes=${dataset.size_bytes} sha256=${dataset.sha256}`,
    );

    const experiment = await unary(
      client,
      'CreateExperiment',
      {
        experiment: {
          display_name: `${path.basename(csvPath)}: predict ${targetColumn}`.slice(0, 256),
          dataset: dataset.name,
          target_column: targetColumn,
        },
      },
      metadata,
    );
    console.log(
      `experiment ${experiment.name} task=${experiment.resolved_task} metric=${experiment.primary_metric}`,
    );

    const started = await unary(
      client,
      'StartRun',
      { experiment: experiment.name, stop_conditions: { max_models: maxModels } },
      metadata,
    );
    console.log(`run ${started.name} state=${started.state} max_models=${maxModels}`);

    await watchRun(client, started.name, metadata);

    // The run as stored once it ended, and its ranked models.
    const run = await unary(client, 'GetRun', { name: started.name }, metadata);
    const leaderboard = await unary(client, 'GetLeaderboard', { run: run.name, page_size: 1000 }, metadata);
    for (const entry of leaderboard.entries) {
      const result = entry.model_result;
      console.log(`rank ${entry.rank} ${result.model_family} score=${formatScore(result.primary_score)} ${result.name}`);
    }
    const top = leaderboard.entries.length > 0 ? leaderboard.entries[0].model_result : null;
    let bestScore = run.best_score ?? null;
    if (bestScore === null && top && top.primary_score !== undefined) {
      bestScore = top.primary_score;
    }

    console.log(
      JSON.stringify({
        run: run.name,
        experiment: experiment.name,
        dataset: dataset.name,
        state: run.state,
        stop_reason: run.stop_reason,
        models: leaderboard.entries.length,
        models_evaluated: run.models_evaluated,
        models_failed: run.models_failed,
        metric: leaderboard.metric,
        best_score: bestScore,
        best_model_result: run.best_model_result || null,
        best_model_family: top ? top.model_family : null,
      }),
    );
  } finally {
    client.close();
  }
}

main().catch((err) => {
  if (err instanceof UsageError) {
    console.error(err.message);
    process.exit(2);
  }
  console.error(`error: ${err.message}`);
  process.exit(1);
});
