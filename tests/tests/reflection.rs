//! Server reflection on a real coordinator process, in both protocol versions: `v1`, which
//! current grpcurl speaks, and `v1alpha`, the only one Python's grpcio-reflection, Postman and
//! older grpcurl know. Both must list Shoal's services and resolve a symbol to its file.

use anyhow::Context;
use prost::Message;
use prost_types::FileDescriptorProto;
use shoal_tests::Coordinator;

/// The same questions in each version: the generated types differ only by module.
macro_rules! reflection_client {
    ($version:ident) => {
        pub mod $version {
            use anyhow::{Context, Result, bail};
            use tokio_stream::StreamExt;
            use tonic::transport::Channel;
            use tonic_reflection::pb::$version::server_reflection_client::ServerReflectionClient;
            use tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
            use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;
            use tonic_reflection::pb::$version::{ServerReflectionRequest, ServerReflectionResponse};

            /// The server's answer, or the code of the status it ended the stream with.
            async fn ask(channel: &Channel, request: MessageRequest) -> Result<Result<MessageResponse, i32>> {
                let request = ServerReflectionRequest { host: String::new(), message_request: Some(request) };
                let mut responses = ServerReflectionClient::new(channel.clone())
                    .server_reflection_info(tokio_stream::iter(vec![request]))
                    .await
                    .context(concat!("ServerReflectionInfo (", stringify!($version), ")"))?
                    .into_inner();
                let response: ServerReflectionResponse =
                    match responses.next().await.context("the reflection stream ended without an answer")? {
                        Ok(r) => r,
                        Err(status) => return Ok(Err(status.code() as i32)),
                    };
                response.message_response.context("a reflection answer without a message").map(Ok)
            }

            /// Names of the services the server lists.
            pub async fn list_services(channel: &Channel) -> Result<Vec<String>> {
                match ask(channel, MessageRequest::ListServices(String::new())).await? {
                    Ok(MessageResponse::ListServicesResponse(list)) => {
                        Ok(list.service.into_iter().map(|s| s.name).collect())
                    }
                    Err(code) => bail!("list_services failed with code {code}"),
                    other => bail!("list_services answered {other:?}"),
                }
            }

            /// The encoded files that define `symbol`, or the error code the server answered with.
            pub async fn file_containing_symbol(channel: &Channel, symbol: &str) -> Result<Result<Vec<Vec<u8>>, i32>> {
                files(channel, MessageRequest::FileContainingSymbol(symbol.to_owned())).await
            }

            /// The encoded file named `name` (as another file imports it), or the error code.
            pub async fn file_by_filename(channel: &Channel, name: &str) -> Result<Result<Vec<Vec<u8>>, i32>> {
                files(channel, MessageRequest::FileByFilename(name.to_owned())).await
            }

            async fn files(channel: &Channel, request: MessageRequest) -> Result<Result<Vec<Vec<u8>>, i32>> {
                match ask(channel, request).await? {
                    Ok(MessageResponse::FileDescriptorResponse(files)) => Ok(Ok(files.file_descriptor_proto)),
                    // An error answer in the stream, or the stream ended with that status.
                    Ok(MessageResponse::ErrorResponse(error)) => Ok(Err(error.error_code)),
                    Err(code) => Ok(Err(code)),
                    other => bail!("the file request answered {other:?}"),
                }
            }

            /// Every file `shoal.v1.JobService` needs, as a client walks them: the symbol's file,
            /// then each import by name. Also the code an unknown symbol gets.
            pub async fn job_service_files(channel: &Channel) -> Result<(Vec<Vec<u8>>, Result<Vec<Vec<u8>>, i32>)> {
                use prost::Message;
                let mut found = file_containing_symbol(channel, "shoal.v1.JobService")
                    .await?
                    .map_err(|code| anyhow::anyhow!("JobService not resolved: code {code}"))?;
                let mut next = 0;
                while next < found.len() {
                    let file = prost_types::FileDescriptorProto::decode(found[next].as_slice())?;
                    next += 1;
                    for import in &file.dependency {
                        let known = found.iter().any(|b| {
                            prost_types::FileDescriptorProto::decode(b.as_slice()).is_ok_and(|f| f.name() == import)
                        });
                        if !known {
                            let files = file_by_filename(channel, import)
                                .await?
                                .map_err(|code| anyhow::anyhow!("import {import} not resolved: code {code}"))?;
                            found.extend(files);
                        }
                    }
                }
                let unknown = file_containing_symbol(channel, "shoal.v1.NoSuchService").await?;
                Ok((found, unknown))
            }
        }
    };
}

reflection_client!(v1);
reflection_client!(v1alpha);

/// The file among `encoded` that declares `shoal.v1.JobService`, with the names of its methods.
fn job_service_methods(encoded: &[Vec<u8>]) -> anyhow::Result<Vec<String>> {
    for bytes in encoded {
        let file = FileDescriptorProto::decode(bytes.as_slice())?;
        if file.package() != "shoal.v1" {
            continue;
        }
        if let Some(service) = file.service.iter().find(|s| s.name() == "JobService") {
            return Ok(service.method.iter().map(|m| m.name().to_owned()).collect());
        }
    }
    anyhow::bail!("no file among {} declares shoal.v1.JobService", encoded.len())
}

fn check_version(
    version: &str,
    services: Vec<String>,
    job_service: Vec<Vec<u8>>,
    unknown: Result<Vec<Vec<u8>>, i32>,
) -> anyhow::Result<()> {
    for wanted in [
        "shoal.v1.JobService",
        "shoal.v1.WorkerService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(services.iter().any(|n| n == wanted), "{version}: {wanted} missing from {services:?}");
    }
    let methods = job_service_methods(&job_service)?;
    assert!(methods.iter().any(|m| m == "SubmitJob"), "{version}: JobService without SubmitJob: {methods:?}");
    // Every import resolved by name, so a client can decode every message type.
    let names: Vec<String> = job_service
        .iter()
        .map(|b| FileDescriptorProto::decode(b.as_slice()).map(|f| f.name().to_owned()))
        .collect::<Result<_, _>>()?;
    assert!(
        names.iter().any(|n| n == "spec.proto"),
        "{version}: job.proto's import spec.proto not resolved: {names:?}"
    );
    assert_eq!(
        unknown,
        Err(tonic::Code::NotFound as i32),
        "{version}: an unknown symbol is NOT_FOUND (an error answer or the stream's status)"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_answers_in_v1_and_v1alpha() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let coordinator = Coordinator::start(dir.path(), &dir.path().join("c.db"), &[])?;
    let channel = tonic::transport::Endpoint::from_shared(coordinator.url())?.connect().await?;

    let services = v1::list_services(&channel).await?;
    let (job_service, unknown) = v1::job_service_files(&channel).await.context("v1")?;
    check_version("v1", services.clone(), job_service, unknown)?;

    let services_alpha = v1alpha::list_services(&channel).await?;
    let (job_service, unknown) = v1alpha::job_service_files(&channel).await.context("v1alpha")?;
    check_version("v1alpha", services_alpha.clone(), job_service, unknown)?;

    let (mut a, mut b) = (services, services_alpha);
    a.sort();
    b.sort();
    assert_eq!(a, b, "both versions list the same services");
    Ok(())
}
